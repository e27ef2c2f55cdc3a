"""Benchmark: what the trained model costs, against the rules alone.

Run: python -m bench.classifier

- Time: classifying the project's labelled fixtures (252 messages) with the policy's rules
  alone (the baseline) and with the rules and the shipped model; median of five passes.
- Memory: the model as loaded (tracemalloc), and the resident memory of a fresh Python
  that reads it, against one that imports scikit-learn instead (which the daemon never
  does: mailbot.model does the arithmetic itself).
- Training: building the model from the fixtures, and a five-fold cross-validation.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

from bench.common import machine, write_result
from bench.support import save_json
from mailbot.classify import classify, load_rules
from mailbot.model import SHIPPED, read_model
from mailbot.training import cross_validate, read_corpus, train_model

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data"


def _pass_seconds(messages: list, rules, model) -> float:
    started = time.perf_counter()
    for message in messages:
        classify(message, rules, model=model)
    return time.perf_counter() - started


def _rss_kb(code: str) -> int:
    """Peak resident memory (KB) of a fresh Python running `code` (VmHWM: getrusage's
    figure would include this process's, which the child is forked from)."""
    probe = (
        f"{code}\nfrom pathlib import Path\n"
        "print(next(l.split()[1] for l in Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def measure() -> dict:
    examples = read_corpus(FIXTURES / "classify") + read_corpus(FIXTURES / "classify-new")
    messages = [e.message for e in examples]
    rules = load_rules()
    tracemalloc.start()
    model = read_model()
    model_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rules_only = statistics.median(_pass_seconds(messages, rules, None) for _ in range(5))
    with_model = statistics.median(_pass_seconds(messages, rules, model) for _ in range(5))
    started = time.perf_counter()
    train_model(examples, [])
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    cross_validate(examples, lambda m, mod: classify(m, rules, model=mod))
    cv_s = time.perf_counter() - started
    return {
        "messages": len(messages),
        "rules_only_ms": rules_only / len(messages) * 1000,
        "with_model_ms": with_model / len(messages) * 1000,
        "model_file_kb": SHIPPED.stat().st_size / 1024,
        "model_loaded_kb": model_bytes / 1024,
        "python_rss_kb": _rss_kb("import mailbot.classify"),
        "model_rss_kb": _rss_kb(
            "import mailbot.classify, mailbot.model; mailbot.model.read_model()"
        ),
        "sklearn_rss_kb": _rss_kb(
            "import mailbot.classify, sklearn.linear_model, sklearn.feature_extraction.text"
        ),
        "features": len(model.layers[0].idf),
        "train_s": train_s,
        "cv_s": cv_s,
    }


def report(r: dict) -> str:
    ratio = r["with_model_ms"] / r["rules_only_ms"]
    return "\n".join(
        [
            f"Classifier: the shipped model against the rules alone ({date.today()}, {machine()})",
            "",
            "| | rules alone (baseline) | rules and model | ratio |",
            "|---|---|---|---|",
            f"| time per message ({r['messages']} fixtures, median of 5 passes) "
            f"| {r['rules_only_ms']:.2f} ms | {r['with_model_ms']:.2f} ms | {ratio:.2f}x |",
            f"| peak memory of a Python that classifies "
            f"| {r['python_rss_kb'] / 1024:.1f} MB | {r['model_rss_kb'] / 1024:.1f} MB "
            f"| {r['model_rss_kb'] / r['python_rss_kb']:.2f}x |",
            "",
            f"The model: {r['features']:,} words and word pairs, {r['model_file_kb']:.0f} KB on "
            f"disk, {r['model_loaded_kb'] / 1024:.1f} MB once read. Importing scikit-learn "
            f"instead would take a Python to {r['sklearn_rss_kb'] / 1024:.1f} MB, which is why "
            "the daemon does the arithmetic itself.",
            f"Training on the {r['messages']} fixtures: {r['train_s']:.2f} s; a five-fold "
            f"cross-validation (five models, every message classified): {r['cv_s']:.2f} s.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the figures here, for bench.run_all")
    args = parser.parse_args()
    results = measure()
    text = report(results)
    print(text)
    write_result("classifier", text)
    save_json(args.json, results)


if __name__ == "__main__":
    main()
