"""Print the THUMOS14 annotation statistics that synthetic.py hard-codes.

    python scripts/thumos14_stats.py path/to/THUMOS14/gt.json

Reads the release's gt.json (annotations only, no durations). The Diving copy of every
CliffDiving instance is left out of the per-class numbers, as synthetic.py adds it back.
"""
import argparse
import json
from collections import Counter

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gt_json")
    database = json.load(open(p.parse_args().gt_json))["database"]

    label_sets, counts, durations = Counter(), {}, {}
    per_video, all_durations, last_end, two = [], [], [], 0
    for video in database.values():
        ann = [(a["label"], float(a["segment"][0]), float(a["segment"][1]))
               for a in video["annotations"]]
        per_video.append(len(ann))
        all_durations += [e - s for _, s, e in ann]
        last_end.append(max(e for _, _, e in ann))
        two += len({lab for lab, _, _ in ann}) >= 2
        if any(lab == "CliffDiving" for lab, _, _ in ann):
            ann = [a for a in ann if a[0] != "Diving"]
        per_class = Counter(lab for lab, _, _ in ann)
        label_sets[tuple(sorted(per_class))] += 1
        for lab, n in per_class.items():
            counts.setdefault(lab, []).append(n)
        for lab, s, e in ann:
            durations.setdefault(lab, []).append(max(e - s, 0.1))

    def log_stats(x):
        x = np.log(x)
        return f"({x.mean():.3f}, {x.std():.3f})"

    print(f"videos {len(database)}, instances {len(all_durations)}")
    print("instances per video: median %.1f, max %d" % (np.median(per_video), max(per_video)))
    print("instance duration (s): median %.2f, max %.1f" % (np.median(all_durations),
                                                          max(all_durations)))
    print("videos with two or more labels: %.3f" % (two / len(database)))
    print("last annotation end (s), a lower bound on length: median %.1f, max %.1f"
          % (np.median(last_end), max(last_end)))
    print("LABEL_SET_COUNTS = [")
    for labels, n in sorted(label_sets.items()):
        print(f"    ({labels!r}, {n}),")
    print("]\nCLASS_STATS = {  # (log count per video), (log duration in s)")
    for lab in sorted(counts):
        print(f'    "{lab}": ({log_stats(counts[lab])}, {log_stats(durations[lab])}),')
    print("}")


if __name__ == "__main__":
    main()
