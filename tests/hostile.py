"""Build the hostile artifacts directories of tests/hostile_cases.json (used by tests/test_hostile.py).

Each case damages a copy of a freshly exported directory, `BASE/artifacts`, beside a sentinel
directory `BASE/sentinel` that no consumer may touch. Damage operations (the "op" of each step):

    set                {"at": [...], "value": V} or {"raw": "NaN"}: set a manifest field; "@NAME" in
                       "at" selects the artifacts entry named NAME; "{sentinel}" in a string expands to
                       the sentinel's absolute path; "raw" writes the JSON text as is (NaN, Infinity)
    duplicate          {"of": "@NAME", "set": {...}}: append a copy of an entry with some fields changed
    symlink            {"file": F, "to": T}: replace F (in artifacts) by a symlink to T
    copy               {"file": F, "from": G}: replace F by a regular copy of G
    fifo               {"file": F}: replace F by a FIFO
    write              {"file": F, "json": {...}}: write a file (e.g. a journal)
    manifest_text      {"text": "[]"}: manifest.json's whole text
    manifest_generated {"kind": "huge", "bytes": N} or {"kind": "deep", "depth": N}
    onnx_metadata      {"entry": NAME, "set": {key: value}}: change ONNX metadata_props; re-hash
    onnx_model         {"entry": NAME, "graph": "reduce_sum_batch"}: a new model, same metadata; re-hash

"Re-hash": the stored version is rewritten (its alias re-linked) and the manifest entry's sha256,
size and metadata updated, so only the model's content is hostile.

In file names and string values, "{stored:NAME}" expands to the stored version (`path`) of entry
NAME and "{spaces:N}" to N spaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from tests.conftest import ROOT

TABLE = json.loads((ROOT / "tests" / "hostile_cases.json").read_text())
CASES = {case["id"]: case for case in TABLE["cases"]}
WRITERS = ("export.savedmodel", "export.torchscript", "export.onnx", "export.all")
_RAW = "\u0000raw{}\u0000"


def expectation(case: dict, consumer: str) -> str:
    """What `consumer` must do with `case`: "refuse", "ok", "refuse_or_rebuild" or "page"."""
    group = "writers" if consumer in WRITERS else "*"
    return case["expect"].get(consumer) or case["expect"].get(group) or TABLE["defaults"][group]


def matrix() -> list[tuple[str, str]]:
    """(case, consumer) pairs: every consumer, but only `one_exporter` unless the case says "all"."""
    pairs = []
    for case in TABLE["cases"]:
        for consumer in TABLE["consumers"]:
            if consumer in WRITERS and case["exporters"] != "all" and consumer != TABLE["one_exporter"]:
                continue
            pairs.append((case["id"], consumer))
    return pairs


def snapshot(directory: Path) -> dict[str, tuple]:
    """Every name under `directory` (itself included): type, size, link count, mtime, content or link
    target. Symlinks are not followed and only regular files are read (never a FIFO)."""
    out = {}
    for path in [directory, *sorted(directory.rglob("*"))]:
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        else:
            content = None
        key = path.relative_to(directory).as_posix()
        out[key] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_nlink, info.st_mtime_ns, content)
    return out


class Damage:
    """Applies one case's damage to BASE/artifacts, with its sentinel beside it."""

    def __init__(self, base: Path, exported_dir: Path):
        from oneneuron.fsio import Root
        from oneneuron.manifest import refresh_aliases
        from oneneuron.schema import Manifest

        self.art, self.sentinel = base / "artifacts", base / "sentinel"
        shutil.copytree(exported_dir, self.art, symlinks=True)
        refresh_aliases(Root(self.art), Manifest.load(self.art))  # copytree does not keep hard links
        self.stored = {e["name"]: e["path"] for e in self.manifest()["artifacts"]}
        for name, spec in TABLE["sentinel"].items():
            target = self.sentinel / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if "copy" in spec:
                shutil.copyfile(self.file(spec["copy"]), target)
            else:
                target.write_text(spec["text"])

    def expand(self, text: str) -> str:
        text = re.sub(r"\{spaces:(\d+)\}", lambda m: " " * int(m.group(1)), text)
        text = text.replace("{sentinel}", str(self.sentinel))
        for name, rel in self.stored.items():
            text = text.replace(f"{{stored:{name}}}", rel)
        return text

    def file(self, rel: str) -> Path:
        return self.art / self.expand(rel)

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.art / "manifest.json").read_text())

    def write_manifest(self, doc: dict[str, Any], raws: list[str] = ()) -> None:
        text = json.dumps(doc, indent=2)
        for i, raw in enumerate(raws):
            text = text.replace(json.dumps(_RAW.format(i)), raw)
        self.replace(self.art / "manifest.json", text.encode())

    @staticmethod
    def replace(path: Path, data: bytes) -> None:
        tmp = path.with_name(f"{path.name}.damage")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def apply(self, case: dict) -> Path:
        for step in case["damage"]:
            getattr(self, "op_" + step["op"])(step)
        return self.art

    def _select(self, doc: Any, key: Any) -> Any:
        if isinstance(key, str) and key.startswith("@"):
            name = key[1:]  # matched by name, alias or stored path, whichever an earlier step left
            return next(
                i
                for i, e in enumerate(doc)
                if name in (e["name"], e.get("alias")) or e["path"] == self.stored.get(name)
            )
        return key

    def op_set(self, step: dict) -> None:
        doc = self.manifest()
        node = doc
        *path, last = step["at"]
        for key in path:
            node = node[self._select(node, key)]
        raws = []
        if "raw" in step:
            value, raws = _RAW.format(0), [step["raw"]]
        else:
            value = self.expand(step["value"]) if isinstance(step["value"], str) else step["value"]
        node[self._select(node, last)] = value
        self.write_manifest(doc, raws)

    def op_duplicate(self, step: dict) -> None:
        doc = self.manifest()
        entry = dict(doc["artifacts"][self._select(doc["artifacts"], step["of"])])
        doc["artifacts"].append(entry | step["set"])
        self.write_manifest(doc)

    def op_symlink(self, step: dict) -> None:
        path = self.file(step["file"])
        path.unlink(missing_ok=True)
        os.symlink(self.expand(step["to"]), path)

    def op_copy(self, step: dict) -> None:
        path = self.file(step["file"])
        path.unlink(missing_ok=True)
        shutil.copyfile(self.file(step["from"]), path)

    def op_fifo(self, step: dict) -> None:
        path = self.file(step["file"])
        path.unlink(missing_ok=True)
        os.mkfifo(path)

    def op_write(self, step: dict) -> None:
        self.file(step["file"]).write_text(json.dumps(step["json"]))

    def op_manifest_text(self, step: dict) -> None:
        self.replace(self.art / "manifest.json", step["text"].encode())

    def op_manifest_generated(self, step: dict) -> None:
        if step["kind"] == "huge":
            head = '{"schema_version": 2, "pad": "'
            text = head + "a" * (step["bytes"] - len(head) - 2) + '"}'
        else:
            text = "[" * step["depth"] + "]" * step["depth"]
        self.replace(self.art / "manifest.json", text.encode())

    def op_onnx_metadata(self, step: dict) -> None:
        proto = onnx.load(self.art / self.stored[step["entry"]])
        props = {p.key: p.value for p in proto.metadata_props}
        props |= {k: self.expand(v) for k, v in step["set"].items()}
        del proto.metadata_props[:]
        helper.set_model_props(proto, props)
        self._rehash(step["entry"], proto)

    def op_onnx_model(self, step: dict) -> None:
        assert step["graph"] == "reduce_sum_batch"
        old = onnx.load(self.art / self.stored[step["entry"]])
        inits = list(old.graph.initializer) + [helper.make_tensor("axes", TensorProto.INT64, [1], [0])]
        graph = helper.make_graph(
            [*old.graph.node[:-1], helper.make_node("Add", list(old.graph.node[-1].input), ["row"])]
            + [helper.make_node("ReduceSum", ["row", "axes"], ["y"], keepdims=1)],
            "reduce_sum_batch",
            list(old.graph.input),
            list(old.graph.output),
            inits,
        )
        proto = helper.make_model(graph, opset_imports=list(old.opset_import), ir_version=old.ir_version)
        helper.set_model_props(proto, {p.key: p.value for p in old.metadata_props})
        onnx.checker.check_model(proto)
        self._rehash(step["entry"], proto)

    def _rehash(self, name: str, proto: onnx.ModelProto) -> None:
        """Write `proto` as entry `name`'s stored version (its alias re-linked) and record its hash."""
        data = proto.SerializeToString()
        stored = self.art / self.stored[name]
        self.replace(stored, data)
        alias = self.art / name
        alias.unlink()
        os.link(stored, alias)
        doc = self.manifest()
        entry = doc["artifacts"][self._select(doc["artifacts"], "@" + name)]
        entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
        entry["metadata"] = {p.key: p.value for p in proto.metadata_props}
        self.write_manifest(doc)
