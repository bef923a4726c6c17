"""Data: the four tasks as canonical records from three sources (builtin, local, hub), one split protocol.

The trainer's entry point is `load_task_splits(cfg, task=None) -> datasets.DatasetDict` with "train",
"validation" and "test". Modules: tasks (the task table), builtin (synthetic tasks), raw (official files),
hub (`datasets` download), cache (the on-disk cache), splits (the split protocol), validate (checks),
summary (statistics), sources (the sources and the loading API).
"""

from tunebench.data.sources import load_split_records, load_task_splits

__all__ = ["load_split_records", "load_task_splits"]
