"""scripts/benchmark.py --quick: every section runs end to end and prints its Markdown table,
every figure a positive number with its unit, the fast code agreeing with the references it
is timed against. No timing is compared (the comparisons themselves are tested in
test_references.py, test_i3d.py and test_tvl1.py)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")
HEADER = "| what | size | figure | note | load (1 min) |"
FIGURE = re.compile(r"(-?[0-9.]+(?:e[-+]?[0-9]+)?) (ms|s|min|h|frames/s|pairs/s|px)")
ROWS = {
    "Training": ["train step, bare (demo)", "train step, loop (demo)", "train step, bare (paper)",
                 "train step, loop (paper)"],
    "Evaluator": ["test pass: infer", "  of which forward", "  of which input", "  of which post-processing",
                  "test pass: Evaluator", "test pass: scaled", "post-processing, random-weight CAS",
                  "post-processing, action-like CAS", "evaluator: parse predictions", "evaluator: fast",
                  "evaluator: plain loop reference", "evaluator: pandas-style reference", "paper recipe, estimated"],
    "I3D": [f"I3D {stream}, {net}, {phase} allocator" for phase in ("default", "retained")
            for stream in ("rgb", "flow") for net in ("plain", "fast")],
    "Flow": ["flow order: EPE of crop-first vs resized-first, inside the crop", "TV-L1 OpenCV on the crop, 1 thread",
             "TV-L1 OpenCV on the resized frame (--flow_before_crop), 1 thread",
             "TV-L1 OpenCV, 1 thread, as the extractor computes a snippet",
             "TV-L1 tvl1.py, 1 thread, 4 pairs per call, as the extractor computes a snippet"],
    "Extraction": ["decode 1280 x 720 (mp4v), resample to 25 fps", "resize 64 + crop 56 + RGB + gray of the crop",
                   "resize 64 + crop 56 + RGB + gray of the resized frame",
                   "I3D rgb, fast (load_i3d), the extractor's threads",
                   "I3D flow, fast (load_i3d), the extractor's threads"]
                  + [f"estimate, 3-minute video, both streams, --flow_backend {b}, {what}" for b in ("opencv", "torch")
                     for what in ("flow on the crop", "--flow_before_crop (x the OpenCV cost ratio)")]
                  + ["estimate, 3-minute video, --streams rgb"]
                  + [f"end to end, extract_video --flow_backend {b}, both streams" for b in ("opencv", "torch")],
}


def run(cwd, *args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=str(cwd), capture_output=True, text=True, timeout=600)


def tables(text):
    """{section title: [(what, size, figure, note, load), ...]} of the printed Markdown, checking
    that each section is a heading, a blank line, the header and its rows of five cells."""
    out = {}
    for block in text.split("\n## ")[1:]:
        lines = block.strip("\n").split("\n")
        assert lines[1:4] and lines[1] == "" and lines[2] == HEADER and lines[3] == "|---|---|---|---|---|", block
        rows = []
        for line in lines[4:]:
            if not line.startswith("| "):
                break
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 5, line
            rows.append(tuple(line.strip()[2:-2].split(" | ")))
        out[lines[0]] = rows
    return out


def figure(cell):
    m = FIGURE.fullmatch(cell)
    assert m, f"not a number with a unit: {cell!r}"
    return float(m.group(1))


def test_every_section_prints_its_table_of_positive_figures(tmp_path):
    proc = run(tmp_path, "--quick", "--section", "all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = tables(proc.stdout)
    assert list(found) == list(ROWS), proc.stdout
    for title, rows in found.items():
        assert [r[0].rstrip() for r in rows] == [w.rstrip() for w in ROWS[title]], (title, rows)
        for what, size, fig, note, load in rows:
            assert figure(fig) > 0, (title, what, fig)
            assert float(load) >= 0 and size, (title, what)
    text = proc.stdout
    assert text.count("identical") == 2 and "DIFFERENT" not in text, text
    ap = [float(n.split("max AP difference ")[1].split(";")[0]) for _, _, _, n, _ in found["Evaluator"]
          if "max AP difference" in n]
    assert len(ap) == 2 and max(ap) < 1e-9, text
    i3d = {r[0]: float(r[3].split("features within ")[1].split(" ")[0]) for r in found["I3D"]}
    assert all(d < 1e-4 for d in i3d.values()) and i3d["I3D rgb, plain, default allocator"] == 0, i3d
    for what, size, fig, note, _ in found["Extraction"]:
        if what.startswith("end to end"):
            assert size == "16 frames (1 snippets)", (what, size)
    assert not os.listdir(tmp_path)  # everything it writes goes to a temporary folder


def test_one_section_and_its_options(tmp_path):
    proc = run(tmp_path, "--quick", "--section", "evaluator", "--evaluator_parts", "post,eval", "--no_pandas")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = tables(proc.stdout)
    assert list(found) == ["Evaluator"], proc.stdout
    whats = [r[0] for r in found["Evaluator"]]
    assert whats[0] == "post-processing, noise CAS" and "evaluator: fast" in whats, whats
    assert not any("pandas" in w or "recipe" in w or "test pass" in w for w in whats), whats


def test_bad_options_are_refused(tmp_path):
    for args, message in ((["--section", "flow,speed"], "--section"),
                          (["--evaluator_parts", "train"], "--evaluator_parts"),
                          (["--quick", "--section", "i3d", "--batch", "0"], "--batch")):
        proc = run(tmp_path, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            (args, proc.stderr)
