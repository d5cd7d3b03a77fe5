"""Text tables of an `evaluate_detection` result (mAP in percent)."""


def _row(name, values, width):
    return f"{name:<{width}}" + "".join(f"{100 * v:7.2f}" for v in values)


def format_table(result, per_class=False):
    """mAP per tIoU, the averages the thresholds cover, optionally AP per class."""
    classes = result.get("classes") or list(result["ap_per_class"])
    width = max([10] + [len(c) + 2 for c in classes]) if per_class else 10
    lines = [
        f"Detection mAP (%) on subset {result.get('subset', '?')!r}: {len(classes)} classes, "
        f"{result.get('num_videos', '?')} videos, {result.get('num_predictions', '?')} predictions",
        f"{'tIoU':<{width}}" + "".join(f"{t:>7g}" for t in result["tiou"]),
        _row("mAP", result["mAP"], width),
    ]
    if per_class:
        lines.append("-" * (width + 7 * len(result["tiou"])))
        lines += [_row(c, result["ap_per_class"][c], width) for c in classes]
    lines.append(f"average mAP over the {len(result['tiou'])} thresholds: "
                 f"{100 * result['average_mAP']:.2f}")
    for name, value in result.get("averages", {}).items():
        lines.append(f"  average mAP {name:<9}{100 * value:6.2f}")
    if result.get("num_videos_without_features"):
        lines.append(f"{result['num_videos_without_features']} video(s) of the subset have no features: their "
                     f"{result['num_instances_without_features']} instance(s) count as misses")
    return "\n".join(lines)
