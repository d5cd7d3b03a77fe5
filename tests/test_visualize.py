"""visualize.py: CAS / foreground-weight figures of a checkpoint made by a short run."""
import glob
import os

import numpy as np
import pytest

from conftest import TEST_ARGS, TINY_ARGS, write_dataset
from dataset import DataError, Grid
from options import ConfigError


pytest.importorskip("tensorboardX")

import main  # noqa: E402
import visualize  # noqa: E402


def train_tiny(root, run, variant="basnet"):
    main.main(TINY_ARGS + ["--data_path", root, "--num_iters", "5", "--eval_every", "5",
                           "--output_path", run, "--variant", variant, "--seed", "0"])
    return os.path.join(run, "last.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("viz")
    root = str(base / "data")
    write_dataset(root)
    return root, train_tiny(root, str(base / "run"))


def record_curves(monkeypatch):
    """Keep the curves each figure gets."""
    seen = []
    draw = visualize.draw_video

    def recording(plt, **kw):
        seen.append(kw["curves"])
        return draw(plt, **kw)
    monkeypatch.setattr(visualize, "draw_video", recording)
    return seen


def test_figures_and_events(trained, monkeypatch):
    root, ckpt = trained
    seen = record_curves(monkeypatch)
    written = visualize.main(TEST_ARGS + ["--data_path", root, "--model_file", ckpt])
    assert len(seen) == 3 and all(all(c is not None for c in curves.values()) for curves in seen)
    assert seen[0]["base"].shape == seen[0]["supp"].shape == (32, 3)  # T x C, background dropped
    figures = os.path.join(os.path.dirname(ckpt), "figures")
    assert written == [os.path.join(figures, f"video_test_{i:04d}.png") for i in range(3)]
    import matplotlib.image
    for path in written:
        assert os.path.getsize(path) > 20_000
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 1000
        assert pixels[..., :3].std() > 0.05  # not a blank image
        # colored curves are drawn: some pixels far from grey
        rgb = pixels[..., :3]
        assert (np.ptp(rgb, axis=-1) > 0.3).mean() > 0.001
    events = glob.glob(os.path.join(figures, "events.out.tfevents.*"))
    assert len(events) == 1 and os.path.getsize(events[0]) > 10_000


def test_options_from_checkpoint_and_chosen_videos(trained, tmp_path, capsys):
    _, ckpt = trained
    out = str(tmp_path / "figs")
    # no data option: dataset, data path and T come from the checkpoint's config
    written = visualize.main(["--model_file", ckpt, "--videos", "video_test_0005", "video_test_0001",
                              "--output_path", out, "--device", "cpu"])
    assert written == [os.path.join(out, "video_test_0005.png"), os.path.join(out, "video_test_0001.png")]
    assert all(os.path.getsize(p) > 20_000 for p in written)
    with pytest.raises(DataError, match="video_test_9999"):
        visualize.main(["--model_file", ckpt, "--videos", "video_test_9999", "--output_path", out])
    with pytest.raises(ConfigError, match="--model_file"):       # one line `error: ...` from run_entry_point
        visualize.main(["--data_path", out])


def test_variant_without_suppression_branch(trained, tmp_path, monkeypatch):
    root, _ = trained
    ckpt = train_tiny(root, str(tmp_path / "baseline"), variant="baseline")
    seen = record_curves(monkeypatch)
    written = visualize.main(["--model_file", ckpt, "--videos", "video_test_0000"])
    assert seen[0]["base"] is not None and seen[0]["supp"] is None and seen[0]["weights"] is None
    assert len(written) == 1 and os.path.getsize(written[0]) > 20_000


def test_draw_omits_missing_curves():
    plt = visualize.pyplot()
    classes = ["A", "B", "C"]
    T, L = 20, 45
    curves = {"base": np.random.default_rng(0).random((T, 3)), "supp": None, "weights": None}
    instances = [("B", 3.0, 6.5), ("B", 10.0, 12.0), ("C", 20.0, 22.0)]
    detections = [{"label": "B", "score": 0.9, "segment": [3.2, 6.0]}]
    fig = visualize.draw_video(plt, length=L, grid=Grid(), curves=curves, probs=np.array([0.1, 0.6, 0.3]),
                               instances=instances, detections=detections, classes=classes, class_th=0.25,
                               title="title")
    assert len(fig.axes) == 2  # classes B and C, no foreground-weight row
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "base CAS (normalised)" in labels and "suppression CAS (normalised)" not in labels
    assert labels.count("best detections") == 1
    x = fig.axes[0].lines[0].get_xdata()
    assert np.allclose(x, np.arange(T) * L / T * 16 / 25)  # sample i at i * L / T * 0.64 s
    assert fig.axes[-1].get_xlim() == (0, L * 16 / 25)
    plt.close(fig)
    curves = {"base": None, "supp": np.zeros((T, 4)), "weights": np.full(T, 0.5)}
    fig = visualize.draw_video(plt, length=L, grid=Grid(), curves=curves, probs=np.array([0.1, 0.6, 0.3]),
                               instances=[], detections=[], classes=classes, class_th=0.25, title="t")
    assert len(fig.axes) == 3  # no annotation: the predicted classes (B, C), then the weights
    plt.close(fig)
    # another time grid (ActionFormer-style: 4 frames at 30 fps, cells centred on the windows)
    grid = Grid(step=4 / 30, start=6 / 30)
    fig = visualize.draw_video(plt, length=L, grid=grid, curves=curves, probs=np.array([0.1, 0.6, 0.3]),
                               instances=[], detections=[], classes=classes, class_th=0.25, title="t")
    x = fig.axes[0].lines[0].get_xdata()
    assert np.allclose(x, 6 / 30 + np.arange(T) * L / T * 4 / 30)
    assert len(fig.axes) == 3  # no annotation: the predicted classes (B, C), then the weights
    assert fig.axes[0].get_title(loc="left").startswith("B:")
    assert fig.axes[-1].lines[0].get_label() == "foreground weight"
    plt.close(fig)


def test_row_titles_say_what_is_drawn():
    plt = visualize.pyplot()
    classes = ["A", "B"]
    curves = {"base": np.zeros((10, 2)), "supp": None, "weights": None}
    detections = [{"label": "A", "score": s, "segment": [s, s + 1]} for s in (0.9, 0.5, 0.7)]
    probs = np.array([0.8, 0.1])
    titles = lambda fig: [ax.get_title(loc="left") for ax in fig.axes]  # noqa: E731
    # one's own video (test.py --video): no ground truth, so none is mentioned
    fig = visualize.draw_video(plt, length=20, grid=Grid(), curves=curves, probs=probs, instances=None,
                               detections=detections, classes=classes, class_th=0.25, title="t")
    assert titles(fig) == ["A: video probability 0.800 (predicted); best 1 of 3 detection(s) drawn"]
    plt.close(fig)
    # a test video with two instances of A: as many best detections drawn
    fig = visualize.draw_video(plt, length=20, grid=Grid(), curves=curves, probs=probs,
                               instances=[("A", 0, 2), ("A", 5, 6), ("B", 8, 9), ("B", 10, 11)],
                               detections=detections + [{"label": "B", "score": 0.2, "segment": [8, 9]}],
                               classes=classes, class_th=0.25, title="t")
    assert titles(fig) == ["A: video probability 0.800 (predicted); 2 ground-truth instance(s), "
                           "best 2 of 3 detection(s) drawn",
                           "B: video probability 0.100 (not predicted); 2 ground-truth instance(s), "
                           "best 1 of 1 detection(s) drawn"]
    plt.close(fig)
    fig = visualize.draw_video(plt, length=20, grid=Grid(), curves=curves, probs=probs, instances=[("B", 8, 9)],
                               detections=detections, classes=classes, class_th=0.25, title="t")
    assert titles(fig) == ["B: video probability 0.100 (not predicted); 1 ground-truth instance(s), no detection"]
    plt.close(fig)
    fig = visualize.draw_video(plt, length=20, grid=Grid(), curves=curves, probs=probs,
                               instances=[("A", 0, 2), ("A", 5, 6)],
                               detections=detections, classes=classes, class_th=0.25, title="t")
    drawn = sorted(tuple(line.get_xdata()) for line in fig.axes[0].lines if line.get_label() != "base CAS (normalised)")
    assert drawn == [(0.7, 1.7), (0.9, 1.9)]     # the best two (scores 0.9, 0.7), not the 0.5 one
    plt.close(fig)
