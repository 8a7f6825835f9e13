"""Ground-truth decompositions from a teacher VLM: cached, bounded, audited.

For each (image, request) the teacher (any chat backend: OpenAI, an OpenAI-compatible server,
Gemini; the model is configuration) is asked with ``prompts/teacher.jinja`` for a JSON object
``{rationale, actions, subjects, goals}`` under a JSON schema (structured output). The answer is
validated against the project's schema (``Decomposition.from_dict``), its actions are mapped onto
the taxonomy (``canonical_action``; labels outside it are kept and counted), and the result is
stored as ``Decomposition.to_json()``. An invalid answer is sent back with the reason
(``teacher.reasks`` times, once by default), then recorded as a failure.

The labels file is the cache (``labels.py``): records are appended as they are made, keyed by
content and teacher setup, so a re-run (or a run after a crash) asks only for what is missing.
One run labels into a file at a time (its run lock, taken before the cache is read): a second
run waits for it and then asks only for what it left, or stops.
Failures that depend on the sample (invalid answer, refusal) are cached too and re-asked only
with ``retry_failed``; service failures (retries exhausted, API errors) are re-asked on the next
run. Concurrency is a bounded thread pool with a bounded queue; retries with backoff live in
the backend's ``RetryPolicy``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.costs import Price, cost_usd, price_for, priced_as
from imageedit_r1.data.edit_sample import EditSample
from imageedit_r1.data.labels import FAILED, OK, sample_key
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.endpoints import TeacherConfig
from imageedit_r1.images import SkipReport, shrink_to_pixels
from imageedit_r1.jsontext import unfence
from imageedit_r1.masking import mask, register_config
from imageedit_r1.prompts import prompt_sha256, render_prompt
from imageedit_r1.store import JsonlStore, content_key, read_jsonl, run_lock
from imageedit_r1.taxonomy import ACTIONS

PROMPT_NAME = "teacher"
# Bump when validation or the stored encoding changes: every sample is then labelled afresh.
LABEL_FORMAT_VERSION = 1
MAX_ITEMS = 12
MAX_ITEM_CHARS = 160

LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string"},
        "actions": {"type": "array", "items": {"type": "string"}},
        "subjects": {"type": "array", "items": {"type": "string"}},
        "goals": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["rationale", "actions", "subjects", "goals"],
    "additionalProperties": False,
}

# Failures that depend on the sample: asked again only with retry_failed.
PERMANENT_FAILURES = ("invalid", "refused")


# ----------------------------------------------------------------------------- configuration


def _default_prices() -> dict[str, Price]:
    # Public list prices per 1M tokens when this table was written; check your provider's page.
    return {
        "gpt-4.1": Price(2.00, 8.00),
        "gpt-4.1-mini": Price(0.40, 1.60),
        "gpt-4o": Price(2.50, 10.00),
        "gpt-4o-mini": Price(0.15, 0.60),
        "gemini-2.5-pro": Price(1.25, 10.00),
        "gemini-2.5-flash": Price(0.30, 2.50),
    }


@dataclass
class LabelConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    concurrency: int = 8
    retry_failed: bool = False
    # Stop after this many service failures in a row (a wrong key or a dead endpoint).
    max_consecutive_failures: int = 25
    prices: dict[str, Price] = field(default_factory=_default_prices)


# ----------------------------------------------------------------------------- prompt and validation


def teacher_prompt(request: str) -> str:
    actions = [(label, ", ".join(synonyms[:6])) for label, synonyms in ACTIONS.items()]
    return render_prompt(PROMPT_NAME, request=request, actions=actions)


class InvalidLabel(ValueError):
    """The teacher's answer is not a usable decomposition; the message says why."""


@dataclass
class ValidatedLabel:
    decomposition: Decomposition  # canonical actions, deduplicated
    teacher_actions: list[str]
    unknown_actions: list[str]
    rationale: str


def validate_label(text: str) -> ValidatedLabel:
    """Parse and check a teacher answer; raise ``InvalidLabel`` with the reason."""
    try:
        data = json.loads(unfence(text or ""))
    except json.JSONDecodeError as exc:
        raise InvalidLabel(f"not JSON ({exc.msg} at char {exc.pos})") from exc
    except RecursionError:
        raise InvalidLabel("not JSON (brackets nested too deep)") from None
    if not isinstance(data, dict):
        raise InvalidLabel(f"expected a JSON object, got {type(data).__name__}")
    for name in ("actions", "subjects", "goals"):
        value = data.get(name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidLabel(f"'{name}' must be an array of strings, got {json.dumps(value)[:80]}")
    try:
        raw = Decomposition.from_dict(data)
    except ValueError as exc:
        raise InvalidLabel(str(exc)) from exc
    canonical = raw.canonicalized()
    for name in ("actions", "subjects", "goals"):
        items = getattr(canonical, name)
        if not items:
            raise InvalidLabel(f"'{name}' is empty")
        if len(items) > MAX_ITEMS:
            raise InvalidLabel(f"'{name}' has {len(items)} entries (at most {MAX_ITEMS})")
        long = [item for item in items if len(item) > MAX_ITEM_CHARS]
        if long:
            raise InvalidLabel(f"'{name}' entry longer than {MAX_ITEM_CHARS} characters: {long[0][:60]!r}…")
    unknown = [action for action in canonical.actions if action not in ACTIONS]
    return ValidatedLabel(canonical, list(raw.actions), unknown, str(data.get("rationale") or "").strip())


# ----------------------------------------------------------------------------- the run


@dataclass
class LabelSummary:
    total: int = 0
    cached: int = 0
    labelled: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, error)
    unknown_actions: Counter = field(default_factory=Counter)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls_without_usage: int = 0
    cost_usd: float = 0.0
    price_model: str | None = None
    model: str = ""
    skipped: SkipReport = field(default_factory=SkipReport)
    aborted: str = ""

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"samples: {self.total} = {self.cached} from cache + {self.labelled} labelled now + "
            f"{len(self.failures)} failed"
        ]
        if self.failures:
            kinds = Counter(kind for _, kind, _ in self.failures)
            lines.append("failures: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
            lines += [f"  {item_id} [{kind}]: {error}" for item_id, kind, error in self.failures[:limit]]
            if len(self.failures) > limit:
                lines.append(f"  ... and {len(self.failures) - limit} more (status 'failed' in the labels file)")
        if self.unknown_actions:
            top = ", ".join(f"{label} x{n}" for label, n in self.unknown_actions.most_common(15))
            lines.append(f"actions outside the taxonomy ({sum(self.unknown_actions.values())}): {top}")
        if self.skipped.skipped:
            lines.append(self.skipped.summary(limit=10))
        price = f"priced as {self.price_model}" if self.price_model else f"no price for {self.model!r}: counted as $0"
        usage = f"teacher calls: {self.calls}; tokens: {self.prompt_tokens:,} in, {self.completion_tokens:,} out"
        if self.calls_without_usage:
            usage += f" ({self.calls_without_usage} calls reported no usage)"
        lines.append(f"{usage}; cost: ${self.cost_usd:.4f} ({price})")
        if self.aborted:
            lines.append(f"ABORTED: {self.aborted}")
        return "\n".join(lines)


class TeacherLabeller:
    """Labels samples with a chat backend into a JSONL labels file that doubles as the cache.

    One run at a time labels into a file: ``run`` takes the file's run lock before it reads the
    cache, so a second run on the same file waits and then asks only for what the first left
    (``if_busy="wait"``), or stops (``"stop"``).
    """

    def __init__(self, backend, labels_path, config: LabelConfig | None = None, *, if_busy: str = "wait") -> None:
        self.backend = backend
        self.config = config or LabelConfig()
        self.labels_path = Path(labels_path)
        self.run_lock = run_lock(self.labels_path, single_file=True, if_busy=if_busy)
        self.prompt_sha = prompt_sha256(PROMPT_NAME)
        register_config(self.config)  # the teacher's key variable is masked in the records

    def _read_cache(self) -> None:
        self.store = JsonlStore(self.labels_path, key_field="key")
        # (key, id) pairs on disk: the same content may be labelled once and known under several ids.
        self._ids_by_key = {(r.get("key"), r.get("id")) for r in read_jsonl(self.labels_path) if r.get("status") == OK}

    def cache_key(self, sample: EditSample) -> str:
        teacher = self.config.teacher
        return content_key(
            sample_key(sample.image_sha256(), sample.request),
            teacher.backend,
            teacher.model,
            teacher.base_url or "",
            teacher.temperature,
            teacher.max_tokens,
            teacher.seed,
            teacher.image_max_pixels,
            self.prompt_sha,
            LABEL_FORMAT_VERSION,
        )

    def needs_label(self, record: dict[str, Any] | None) -> bool:
        if record is None:
            return True
        if record.get("status") == OK:
            return False
        return self.config.retry_failed or record.get("error_kind") not in PERMANENT_FAILURES

    # ------------------------------------------------------------------ one sample

    def label_one(self, sample: EditSample) -> dict[str, Any]:
        """Ask the teacher about one sample; always returns a record (ok or failed), never raises."""
        from imageedit_r1.agents.asking import Ask, ask, ask_log_of
        from imageedit_r1.backends import BackendError, ChatMessage, RefusalError
        from imageedit_r1.retry import RetriesExhausted

        teacher = self.config.teacher
        image = shrink_to_pixels(sample.image, teacher.image_max_pixels)
        first = Ask([ChatMessage(role="user", content=[image, teacher_prompt(sample.request)])], validate_label,
                    LABEL_SCHEMA)
        record: dict[str, Any] = {
            "sample_key": sample_key(sample.image_sha256(), sample.request),
            "id": sample.id,
            "source": sample.source,
            "request": sample.request,
            "image_sha256": sample.image_sha256(),
            "backend": teacher.backend,
            "model": teacher.model,
            "prompt_sha256": self.prompt_sha,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

        def feedback(previous: Ask, reply, error) -> Ask:
            # The first question, the unusable answer and why: the conversation never grows longer.
            return Ask([first.messages[0], ChatMessage(role="assistant", content=reply.text or ""), ChatMessage(
                role="user", content=f"That answer is not usable: {error}. Answer again with only the JSON object "
                "(keys rationale, actions, subjects, goals; the three lists non-empty arrays of strings).")],
                validate_label, LABEL_SCHEMA)

        log = None
        try:
            answer = ask(self.backend, first, reasks=teacher.reasks, unreadable=InvalidLabel, reask=feedback,
                         schema_name="decomposition", temperature=teacher.temperature,
                         max_tokens=teacher.max_tokens, seed=teacher.seed)
            log, label = answer.log, answer.value
            record.update(
                status=OK,
                ground_truth=label.decomposition.to_json(),
                teacher_actions=label.teacher_actions,
                unknown_actions=label.unknown_actions,
                rationale=label.rationale,
            )
        except InvalidLabel as exc:
            log = ask_log_of(exc)
            record.update(status=FAILED, error_kind="invalid", error=str(exc))
        except RefusalError as exc:
            log = ask_log_of(exc)
            record.update(status=FAILED, error_kind="refused", error=str(exc), refusal_reason=exc.reason)
        except RetriesExhausted as exc:
            log = ask_log_of(exc)
            record.update(status=FAILED, error_kind="retries_exhausted", error=str(exc))
        except BackendError as exc:  # "truncated" for an answer cut off before any text (asked again next run)
            log = ask_log_of(exc)
            record.update(status=FAILED, error_kind=getattr(exc, "failure_kind", "api"), error=str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded, never lost: the run goes on
            log = ask_log_of(exc)
            record.update(status=FAILED, error_kind="api", error=f"{type(exc).__name__}: {exc}")
        if log is not None and log.replies:
            record.update(model=log.replies[-1].model or teacher.model, raw=log.replies[-1].text,
                          attempts=len(log.replies))
        record.update(calls=len(log.replies) if log else 0, prompt_tokens=log.prompt_tokens if log else 0,
                      completion_tokens=log.completion_tokens if log else 0,
                      calls_without_usage=log.unreported if log else 0)
        return record

    # ------------------------------------------------------------------ a run

    def run(self, samples: Iterable[EditSample], *, progress: bool = True, total: int | None = None) -> LabelSummary:
        with self.run_lock:  # before the cache is read: what another run is labelling now is not asked twice
            self._read_cache()
            return self._run(samples, progress=progress, total=total)

    def _run(self, samples: Iterable[EditSample], *, progress: bool, total: int | None) -> LabelSummary:
        from tqdm.auto import tqdm

        config = self.config
        summary = LabelSummary(model=config.teacher.model)
        in_flight: dict[Future, tuple[str, EditSample]] = {}
        keys_in_flight: set[str] = set()
        consecutive_failures = 0
        bar = tqdm(total=total, desc=f"labelling with {config.teacher.model}", unit=" samples", disable=not progress)

        def finish(future: Future) -> None:
            nonlocal consecutive_failures
            key, sample = in_flight.pop(future)
            keys_in_flight.discard(key)
            record = self.store.put(key, mask(future.result()))
            if record["status"] == OK:
                self._ids_by_key.add((key, record["id"]))
            summary.calls += record.get("calls", 0)
            summary.prompt_tokens += record.get("prompt_tokens", 0)
            summary.completion_tokens += record.get("completion_tokens", 0)
            summary.calls_without_usage += record.get("calls_without_usage", 0)
            if record["status"] == OK:
                summary.labelled += 1
                summary.unknown_actions.update(record.get("unknown_actions") or [])
                consecutive_failures = 0
            else:
                summary.failures.append((sample.id, record["error_kind"], record["error"]))
                service_failure = record["error_kind"] not in PERMANENT_FAILURES
                consecutive_failures = consecutive_failures + 1 if service_failure else 0
            bar.update(1)

        with ThreadPoolExecutor(max_workers=max(1, config.concurrency), thread_name_prefix="teacher") as pool:
            try:
                for sample in samples:
                    if consecutive_failures >= config.max_consecutive_failures:
                        summary.aborted = (
                            f"{consecutive_failures} teacher calls in a row failed (last: "
                            f"{summary.failures[-1][2]}); check the endpoint, model name and API key"
                        )
                        break
                    summary.total += 1
                    key = self.cache_key(sample)
                    cached = self.store.get(key)
                    if key in keys_in_flight:  # the same content twice in this run
                        summary.cached += 1
                        bar.update(1)
                        continue
                    if not self.needs_label(cached):
                        if cached["status"] == OK:
                            summary.cached += 1
                            if (key, sample.id) not in self._ids_by_key:
                                # Same content under another id: an alias record lets export find it by id.
                                alias = {**cached, "id": sample.id, "source": sample.source, "alias_of": cached.get("id")}
                                self.store.put(key, alias)
                                self._ids_by_key.add((key, sample.id))
                        else:  # a failure that depends on the sample, kept until --retry-failed
                            summary.failures.append((sample.id, cached.get("error_kind", "?"), cached.get("error", "")))
                        bar.update(1)
                        continue
                    keys_in_flight.add(key)
                    in_flight[pool.submit(self.label_one, sample)] = (key, sample)
                    while len(in_flight) >= 2 * max(1, config.concurrency):
                        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                        for future in done:
                            finish(future)
                while in_flight:
                    done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    for future in done:
                        finish(future)
            finally:
                # Stopped early (an error, Ctrl-C): record every call already paid for, drop the queue.
                queued = [future for future in in_flight if future.cancel()]
                for future in queued:
                    keys_in_flight.discard(in_flight.pop(future)[0])
                if in_flight:
                    wait(list(in_flight))
                    for future in list(in_flight):
                        finish(future)
                bar.close()
        summary.price_model = priced_as(config.prices, config.teacher.model)
        summary.cost_usd = cost_usd(price_for(config.prices, config.teacher.model),
                                    summary.prompt_tokens, summary.completion_tokens) or 0.0
        return summary
