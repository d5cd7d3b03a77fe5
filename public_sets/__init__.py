"""The registry of public feature sets: SOURCES maps each sub-command of
scripts/convert_features.py to the module that reads that source.

Every source module has the same small interface:
    HELP                one line: what the sub-command converts
    add_arguments(add)  its own options, each `add(flag, help, default=..., **argparse keywords)`
    read(args)          the parsed options -> a common.Reader whose videos the engine converts
A fifth source is one module with that interface plus one line in SOURCES."""
from public_sets import a2clpt, acmnet, actionformer, wtalc

SOURCES = {
    "wtalc": wtalc,
    "actionformer": actionformer,
    "acmnet": acmnet,
    "a2clpt": a2clpt,
}
