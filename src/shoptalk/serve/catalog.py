"""Which models a `model` name can mean, and loading them on first use.

Served names:

- ``base`` (and the base model's own name): the project's base model;
- each trained run's id (only the promoted run unless ``serve.models: all``);
- ``shoptalk`` and the project's name (e.g. ``kestrel``): aliases of the promoted run;
- ``<slug>/<run id>``: the promoted run of a project made in the console (on the
  same base model), so the console's playground asks it through this catalog too;
- ``<run id>-gguf-<quant>``: each GGUF export of a served run
  (``.shoptalk/exports/<run id>/gguf-<quant>/``), when the engine runs GGUF files
  (llama.cpp). It needs the same groups as its run: its card is the run's.

An adapter is pinned to the content hash of its files the first time it is
served; if the files under that name change later, the name is refused rather
than silently serving different weights. An adapter trained on another base
model is refused too: the base identity recorded with the run (its card) must
match the base being served.

Adapters share one base model in a peft ``PeftModel`` and are switched per
batch; full fine-tuned runs are separate models. Both are kept in an LRU
bounded by ``serve.adapter_cache_gb``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shoptalk.artifacts import CARD_FILE, FINAL_DIR, RUNS_DIR, PromotedMode
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from shoptalk.config import ServeSettings
    from shoptalk.modeling.gguf import BatchContext
    from shoptalk.project import Project

log = logging.getLogger(__name__)

# Keys of config.json that say where or how a model was saved, not what it is.
VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype"}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: Literal["base", "adapter", "full", "gguf"]
    path: Path
    run_dir: Path | None = None
    # The promoted mode's aliases answer with retrieval unless a request says `rag: false`.
    rag: bool = False
    # A fine-tuning job's model: the groups its job recorded (`JobRow.model_groups`),
    # not its card's; `owner_only` when it recorded none (`jobs.models.job_models`).
    job_groups: tuple[str, ...] | None = None
    owner_only: bool = False

    def groups(self) -> list[str] | None:
        """The groups a key must hold to be served this model; None: the owner's scope only."""
        if self.owner_only:
            return None
        if self.job_groups is not None:
            return list(self.job_groups)
        return card_groups(self.run_dir)

    @property
    def gguf_file(self) -> Path:
        """The model file of a GGUF export folder (kind 'gguf')."""
        return gguf_file(self.path)


def gguf_file(folder: Path) -> Path:
    """The one model-<quant>.gguf an export writes (a half-written one starts with '.')."""
    return next(iter(sorted(folder.glob("model-*.gguf"))), folder / "model.gguf")


def gguf_entries(exports: Path, run_dir: Path) -> dict[str, ModelEntry]:
    """The GGUF exports of one run, as ``<run id>-gguf-<quant>`` (those whose file is there).

    A failed export keeps only its reports, so a folder with a model file passed
    its parity check.
    """
    entries = {}
    for folder in sorted((exports / run_dir.name).glob("gguf-*")):
        if gguf_file(folder).is_file():
            name = f"{run_dir.name}-{folder.name}"
            entries[name] = ModelEntry(name, "gguf", folder, run_dir)
    return entries


def card_groups(run_dir: Path | None) -> list[str]:
    """The groups whose documents a run was trained on (its card's `groups`, train.groups).

    Only a key holding every one of them is served the model: what a model
    learnt it may tell anyone who asks. The base model (no run) and runs whose
    card names none were trained on documents open to all.
    """
    card = run_dir / "card.json" if run_dir else None
    if card is None or not card.is_file():
        return []
    return list(json.loads(card.read_text(encoding="utf-8")).get("groups") or [])


def serves(groups: list[str] | None, held: list[str]) -> bool:
    """Whether a key holding `held` (not the owner's scope) may be served a model that
    needs `groups` (None: the owner's scope only)."""
    return groups is not None and set(groups) <= set(held)


@dataclass
class Loaded:
    """What one batch runs on: a model with the right adapter active."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: str | None


def base_identity(model_dir: Path) -> str | None:
    """A hash of what the base model is (its architecture config), not where it lives."""
    config = model_dir / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    stable = {k: v for k, v in data.items() if k not in VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_signature(folder: Path) -> tuple:
    """Cheap to compute on every request; a change triggers a re-hash."""
    return tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9一-鿿]+", "-", name.lower()).strip("-")


def project_entries(
    project: Project, base_path: str, settings: ServeSettings, gguf: bool = False
) -> dict:
    """Every name this project serves, mapped to its model (with `gguf`: its GGUF exports too)."""
    base = ModelEntry("base", "base", Path(base_path))
    entries = {"base": base}
    if project.config.base_model != "default":
        entries[Path(project.config.base_model).name] = base
    promoted = None
    if project.promoted_run_file.is_file():
        promoted = project.promoted_run_file.read_text(encoding="utf-8").strip() or None
    run_dirs = sorted(p.parent for p in project.runs.glob(f"*/{FINAL_DIR}") if p.is_dir())
    for run_dir in run_dirs:
        if settings.models == "promoted" and run_dir.name != promoted:
            continue
        final = run_dir / FINAL_DIR
        kind = "adapter" if (final / "adapter_config.json").is_file() else "full"
        entry = ModelEntry(run_dir.name, kind, final, run_dir)
        entries[run_dir.name] = entry
        if gguf:
            entries |= gguf_entries(project.exports, run_dir)
        if run_dir.name == promoted:
            entries["shoptalk"] = entry
            entries.setdefault(slug(project.config.name) or "shoptalk", entry)
    return with_promoted_mode(project, entries)


def with_promoted_mode(project: Project, entries: dict[str, ModelEntry]) -> dict:
    """The aliases answer in the mode the build promoted (eval.promote): the base model for
    base modes, with retrieval for '+rag' modes; a run's own id and `base` stay as they are."""
    promoted = PromotedMode.read(project.state)
    current = entries.get("shoptalk")
    # A mode chosen with another promoted run is stale (`shoptalk models promote` since).
    if promoted is None or (current.name if current else None) != promoted.run_id:
        return entries
    aliases = ["shoptalk", slug(project.config.name) or "shoptalk"]
    target = entries["base"] if promoted.mode.startswith("base") else current
    for alias in aliases:
        # The project's slug names the promoted model unless a run or `base` has that name.
        if alias == "shoptalk" or entries.get(alias) in (None, current):
            entries[alias] = replace(target, rag=promoted.rag)
    return entries


def workspace_entries(folder: Path) -> dict[str, ModelEntry]:
    """The promoted run of each project in the console's workspace, as ``<slug>/<run id>``."""
    entries = {}
    for promoted_file in sorted(folder.glob("*/.shoptalk/promoted-run")):
        run_id = promoted_file.read_text(encoding="utf-8").strip()
        run_dir = promoted_file.parent / RUNS_DIR / run_id
        # A run id is a folder name, never a path out of the project.
        if not RUN_ID.fullmatch(run_id) or not (run_dir / FINAL_DIR).is_dir():
            continue
        final = run_dir / FINAL_DIR
        kind = "adapter" if (final / "adapter_config.json").is_file() else "full"
        name = f"{promoted_file.parent.parent.name}/{run_id}"
        entries[name] = ModelEntry(name, kind, final, run_dir)
    return entries


class Catalog:
    """Names to models; loads, verifies and evicts them. Thread-safe.

    Two locks: `_lock` guards the names, pins and tokenizers (quick lookups);
    `_load_lock` is held by the batch thread while it loads or switches a model
    (seconds). Lookups never wait for a load, and a load may take `_lock` for
    its own lookups, never the other way round, so the two cannot deadlock.
    Every method may block on disk or a lock: call them off the event loop.
    """

    def __init__(
        self,
        entries: dict[str, ModelEntry],
        cache_gb: float = 4.0,
        device: str = "cpu",
        discover: Callable[[str], dict[str, ModelEntry]] | None = None,
    ) -> None:
        self.entries = entries
        # Finds models made after the server started (a build, a fine-tuning job).
        self.discover = discover
        self._missed: dict[str, float] = {}  # unknown name -> when it was last looked for
        self.base_path = next(e.path for e in entries.values() if e.kind == "base")
        self.cache_bytes = int(cache_gb * 1024**3)
        self.device = device
        self._lock = threading.RLock()
        self._load_lock = threading.RLock()
        self._pins: dict[Path, str] = {}
        self._signatures: dict[Path, tuple] = {}
        self._tokenizers: dict[Path, PreTrainedTokenizerBase] = {}
        self._base: PreTrainedModel | None = None
        self._lru: OrderedDict[Path, int] = OrderedDict()  # path -> bytes, oldest first
        self._full: dict[Path, PreTrainedModel] = {}
        self._adapter_names: dict[Path, str] = {}
        self._llamas: dict[tuple[Path, int], BatchContext] = {}  # (export folder, slot) -> context
        # The kinds of model the engine runs (None: all); the others are not served.
        self.kinds: set[str] | None = None

    @classmethod
    def for_project(
        cls,
        project: Project,
        settings: ServeSettings,
        device: str,
        workspace: Path | None = None,
        gguf: bool = False,
    ) -> Catalog:
        """The served project's models, its jobs' and those of the projects in `workspace`.

        With `gguf` (an engine that runs GGUF files), the runs' GGUF exports too.
        """
        from shoptalk.modeling.load import resolve_base_model

        base_path = resolve_base_model(project.config.base_model, project.root)

        def discover(wanted: str) -> dict[str, ModelEntry]:
            from shoptalk.jobs.models import job_models

            entries = project_entries(project, base_path, settings, gguf)
            jobs = job_models(project, wanted)
            entries |= {
                name: ModelEntry(
                    name,
                    "adapter",
                    m.path,
                    m.run_dir,
                    job_groups=m.groups,
                    owner_only=m.groups is None,
                )
                for name, m in jobs.items()
            }
            if workspace is not None:
                entries |= workspace_entries(workspace)
            return entries

        return cls(discover(""), settings.adapter_cache_gb, device, discover)

    def _served(self) -> dict[str, ModelEntry]:
        return {n: e for n, e in self.entries.items() if self.kinds is None or e.kind in self.kinds}

    def names(self) -> list[str]:
        return sorted(self._served())

    def groups(self, name: str) -> list[str] | None:
        """The groups a key must hold to be served `name` (None: the owner's scope only;
        404 for an unknown name)."""
        return self.resolve(name).groups()

    def names_for(self, held: list[str] | None) -> list[str]:
        """The names a key holding the groups `held` is served (None: every name, an admin)."""
        entries = self._served()
        if held is None:
            return sorted(entries)
        return sorted(n for n, e in entries.items() if serves(e.groups(), held))

    def resolve(self, name: str) -> ModelEntry:
        """The model a request names, verified; raises ApiError for the client."""
        entry = self.entries.get(name)
        # A name is looked for at most once a second: a client retrying an unknown
        # name must not make every request scan the disk.
        now = time.monotonic()
        if entry is None and self.discover is not None and now > self._missed.get(name, 0) + 1:
            with self._lock:
                self.entries = self.discover(name)
                if len(self._missed) > 1000:
                    self._missed.clear()
                self._missed[name] = now
            entry = self.entries.get(name)
        if entry is not None and self.kinds is not None and entry.kind not in self.kinds:
            entry = None
        if entry is None:
            raise ApiError(
                404,
                f"The model {name!r} does not exist. Served models: {', '.join(self.names())}.",
                code="model_not_found",
                param="model",
            )
        if entry.kind != "base":
            self.verify(entry)
        return entry

    def verify(self, entry: ModelEntry) -> str:
        """The entry's pinned content hash; refuses changed files and foreign bases."""
        with self._lock:
            signature = file_signature(entry.path)
            pinned = self._pins.get(entry.path)
            if pinned is not None and self._signatures.get(entry.path) == signature:
                return pinned
            digest = content_hash(entry.path)
            if pinned is not None and digest != pinned:
                raise ApiError(
                    409,
                    f"The model {entry.name!r} changed on disk since it was first served "
                    f"(content hash {pinned[:12]} → {digest[:12]}); refusing to serve different "
                    "weights under the same name. Train a new run, or restart the server to "
                    "accept the new files.",
                    code="model_changed",
                    param="model",
                )
            if pinned is None and entry.kind == "adapter":
                self._check_base(entry)
            self._pins[entry.path] = digest
            self._signatures[entry.path] = signature
            return digest

    def _check_base(self, entry: ModelEntry) -> None:
        served = base_identity(self.base_path)
        recorded = self._recorded_base(entry)
        if recorded is None or recorded[1] != served:
            found = "no base model on record" if recorded is None else f"base {recorded[0]}"
            raise ApiError(
                409,
                f"The adapter {entry.name!r} was trained on another base model ({found}); "
                f"this server serves {self.base_path}. Serve it with its own base model.",
                code="adapter_base_mismatch",
                param="model",
            )

    def _recorded_base(self, entry: ModelEntry) -> tuple[str, str | None] | None:
        """(where, identity) of the base the adapter was trained on, from its card."""
        candidates = []
        card = entry.run_dir / CARD_FILE if entry.run_dir else None
        if card is not None and card.is_file():
            candidates.append(json.loads(card.read_text(encoding="utf-8")).get("base_path"))
        adapter_config = json.loads((entry.path / "adapter_config.json").read_text("utf-8"))
        candidates.append(adapter_config.get("base_model_name_or_path"))
        for where in filter(None, candidates):
            identity = base_identity(Path(where))
            if identity is not None:
                return where, identity
        return None

    def model_folder(self, entry: ModelEntry) -> Path:
        """The HF folder whose tokenizer and config describe `entry`.

        A GGUF export's is the merged folder it was converted from (``hf/`` beside it).
        """
        if entry.kind == "gguf":
            hf = entry.path.parent / "hf"
            return hf if (hf / "config.json").is_file() else self.base_path
        return entry.path if entry.kind == "full" else self.base_path

    def tokenizer(self, entry: ModelEntry) -> PreTrainedTokenizerBase:
        from shoptalk.modeling.chat_format import ensure_chat_template
        from shoptalk.modeling.load import load_tokenizer

        folder = entry.path if (entry.path / "tokenizer_config.json").is_file() else self.base_path
        if entry.kind == "gguf":
            folder = self.model_folder(entry)
        with self._lock:
            if folder not in self._tokenizers:
                tokenizer = load_tokenizer(str(folder))
                ensure_chat_template(tokenizer)
                self._tokenizers[folder] = tokenizer
            return self._tokenizers[folder]

    def context_length(self, entry: ModelEntry) -> int:
        folder = self.model_folder(entry)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return int(config.get("max_position_embeddings") or 2048)

    def acquire(self, entry: ModelEntry) -> Loaded:
        """The model for `entry`, loading it (and evicting others) if needed."""
        with self._load_lock:
            if entry.kind == "full":
                model = self._load_full(entry)
                return Loaded(model, self.tokenizer(entry), None)
            base = self._load_base()
            if entry.kind == "base":
                return Loaded(base, self.tokenizer(entry), None)
            adapter = self.verify(entry)[:16]
            self._load_adapter(entry, adapter)
            return Loaded(self._base, self.tokenizer(entry), adapter)

    def _load_base(self) -> PreTrainedModel:
        from shoptalk.modeling.load import load_model

        if self._base is None:
            log.info("Loading base model %s", self.base_path)
            self._base = load_model(str(self.base_path), self.device).eval()
        return self._base

    def _load_full(self, entry: ModelEntry) -> PreTrainedModel:
        from shoptalk.modeling.load import load_model

        if entry.path not in self._full:
            self.verify(entry)
            log.info("Loading full fine-tuned model %s", entry.name)
            model = load_model(str(entry.path), self.device).eval()
            self._full[entry.path] = model
            self._remember(
                entry.path, sum(p.numel() * p.element_size() for p in model.parameters())
            )
        self._lru.move_to_end(entry.path)
        return self._full[entry.path]

    def _load_adapter(self, entry: ModelEntry, adapter: str) -> None:
        from peft import PeftModel

        if entry.path not in self._lru:
            log.info("Loading adapter %s (%s)", entry.name, adapter)
            if isinstance(self._base, PeftModel):
                self._base.load_adapter(str(entry.path), adapter_name=adapter)
            else:
                self._base = PeftModel.from_pretrained(
                    self._base, str(entry.path), adapter_name=adapter
                ).eval()
            size = sum(
                p.stat().st_size for p in entry.path.iterdir() if p.suffix in WEIGHT_SUFFIXES
            )
            self._remember(entry.path, size, adapter)
        self._lru.move_to_end(entry.path)
        self._base.set_adapter(adapter)

    def _remember(self, path: Path, size: int, adapter: str | None = None) -> None:
        """Record a loaded model and evict the least recently used others over the cap."""
        self._lru[path] = size
        if adapter is not None:
            self._adapter_names[path] = adapter
        while sum(self._lru.values()) > self.cache_bytes and len(self._lru) > 1:
            oldest = next(iter(self._lru))
            if oldest == path:
                break
            self._evict(oldest)

    def _evict(self, path: Path) -> None:
        log.info("Evicting %s from the model cache", path)
        self._lru.pop(path)
        self._full.pop(path, None)
        adapter = self._adapter_names.pop(path, None)
        if adapter is not None:
            self._base.delete_adapter(adapter)

    def llama(
        self, entry: ModelEntry, slot: int, threads: int, sequences: int, sequence_tokens: int
    ) -> BatchContext:
        """Context `slot` of a GGUF export in llama.cpp, loaded on first use.

        Each slot is its own context of `sequences` sequences with
        `sequence_tokens` KV cells each (the weights are mapped from the file
        once by the OS and shared). A llama.cpp context is not thread-safe: one
        slot is used by one thread only (the engine's worker `slot`).
        """
        with self._load_lock:
            key = (entry.path, slot)
            if key not in self._llamas:
                from shoptalk.modeling.gguf import BatchContext

                self.verify(entry)
                log.info("Loading %s in llama.cpp (context %d)", entry.name, slot)
                self._llamas[key] = BatchContext(
                    entry.gguf_file, sequence_tokens, sequences, threads
                )
            return self._llamas[key]

    def llama_loaded(self, entry: ModelEntry) -> bool:
        """Whether any context of `entry` is in llama.cpp."""
        with self._load_lock:
            return any(path == entry.path for path, _slot in self._llamas)

    def close(self) -> None:
        """Release the llama.cpp contexts (their memory is not Python's to collect)."""
        with self._load_lock:
            for llama in self._llamas.values():
                llama.close()
            self._llamas.clear()

    def loaded(self) -> list[Path]:
        """Paths of the adapters and full models in memory, least recently used first."""
        with self._load_lock:
            return list(self._lru)
