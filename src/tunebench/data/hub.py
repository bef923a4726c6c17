"""`data download`: the tasks from the Hugging Face hub (nyu-mll/glue sst2/mrpc/rte, rajpurkar/squad_v2: each
task's hub_id, hub_config and hub_text_fields in the task table, tunebench.tasks).

Without network `datasets` retries for about half a minute per file before failing, so we first probe the
endpoint with a short TCP connect and fail in seconds with a pointer to `tunebench data import`. Set
HF_HUB_OFFLINE=1 (or HF_DATASETS_OFFLINE=1) to skip the probe and read the local Hugging Face cache.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0
# the hub's GLUE "validation" is the official dev split = our test split (GLUE test labels are hidden)
HUB_SPLITS = {"train": "train", "test": "validation"}
OFFLINE_HINT = ("download where there is network, or get the official files and run "
                "`tunebench data import --glue-dir DIR --squad-dir DIR`")


def hub_endpoint() -> str:
    # read at call time (huggingface_hub reads HF_ENDPOINT once, at import)
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def offline_mode(variables: tuple[str, ...] = OFFLINE_VARIABLES) -> bool:
    """Whether any of these environment variables asks for offline mode (1, true, yes or on)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in variables)


def probe_hub(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the endpoint (or the HTTPS proxy) opens within `timeout`, else why not."""
    target = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or endpoint or hub_endpoint()
    url = urlparse(target if "://" in target else f"http://{target}")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot reach {host}:{port} ({e.strerror or e})"


def check_hub_reachable() -> None:
    if offline_mode():
        return
    problem = probe_hub()
    if problem:
        raise TunebenchError(f"data download: the Hugging Face hub is unreachable: {problem}; {OFFLINE_HINT}")


def load_hub_dataset(spec: TaskSpec):
    """The DatasetDict from the hub (or the local HF cache when offline); TunebenchError on any failure."""
    from datasets import load_dataset

    name = spec.hub_id + (f" ({spec.hub_config})" if spec.hub_config else "")
    try:
        return load_dataset(spec.hub_id, spec.hub_config)
    except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, HfHubHTTPError...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TunebenchError(f"data download: {name} failed: {first}; {OFFLINE_HINT}") from None


def convert_hub_split(spec: TaskSpec, dataset, where: str) -> list[dict]:
    """Hub rows -> canonical records. Classification labels are checked by name against tasks.py, so a
    reordered ClassLabel on the hub cannot silently flip them."""
    if spec.is_qa:
        return [_qa_record(row) for row in dataset]
    label_feature = dataset.features["label"]
    names = tuple(getattr(label_feature, "names", ()) or ())
    if names != spec.label_names:
        raise TunebenchError(f"{where}: hub label names {names} differ from {spec.label_names}")
    fields = spec.hub_text_fields
    if not fields:
        raise TunebenchError(f"{where}: the task table names no hub_text_fields for {spec.name} (tunebench.tasks)")
    records = []
    for row in dataset:
        if row["label"] not in range(spec.num_labels):
            raise TunebenchError(f"{where}: idx {row['idx']}: label {row['label']} (hidden or unknown)")
        records.append({"idx": int(row["idx"]), "text_a": row[fields[0]],
                        "text_b": row[fields[1]] if len(fields) > 1 else None, "label": int(row["label"])})
    return records


def _qa_record(row: dict) -> dict:
    answers = row["answers"]
    return {"id": row["id"], "title": row["title"], "context": row["context"], "question": row["question"],
            "answers": {"text": list(answers["text"]), "answer_start": [int(s) for s in answers["answer_start"]]}}


def download_task(spec: TaskSpec) -> tuple[dict[str, list[dict]], list[dict]]:
    """({"train": records, "test": records}, manifest inputs) for one task."""
    dataset_dict = load_hub_dataset(spec)
    splits, inputs = {}, []
    for ours, theirs in HUB_SPLITS.items():
        if theirs not in dataset_dict:
            raise TunebenchError(f"{spec.hub_id}: no {theirs!r} split on the hub")
        ds = dataset_dict[theirs]
        where = f"{spec.hub_id}/{spec.hub_config or 'default'}/{theirs}"
        splits[ours] = convert_hub_split(spec, ds, where)
        inputs.append({"split": ours, "hub_id": spec.hub_id, "hub_config": spec.hub_config, "hub_split": theirs,
                       "fingerprint": getattr(ds, "_fingerprint", None), "rows": len(ds)})
    return splits, inputs
