"""Where the time of one prediction goes, in-process: each stage of one patient's answer.

Loads the champion of the store in the working directory as the service does, then times
each stage on one patient (median of many runs, microseconds) and the whole answer.

    .venv/bin/python bench/inprocess.py [--repeat 3000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import PATIENT, print_table, write_result


def median_us(function: Callable[[], Any], repeat: int) -> float:
    for _ in range(100):
        function()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append((time.perf_counter() - started) * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3000)
    args = parser.parse_args()

    from pydantic_core import to_json

    from womac.models.compiled import CompiledPatient
    from womac.models.explain import Attributor
    from womac.serve.model import load_champion
    from womac.serve.schemas import PatientRequest
    from womac.settings import Settings

    model = load_champion(Settings())
    pipeline = model.pipeline
    compiled = CompiledPatient(
        pipeline.named_steps["preprocess"], pipeline.named_steps["model"], Attributor(pipeline)
    )
    request = PatientRequest.model_validate(PATIENT)
    record = request.model_dump()
    row = compiled.encode(record)
    answer = model.predict([record])[0]

    stages = [
        ("validation (request schema)", lambda: PatientRequest.model_validate(PATIENT)),
        ("features (encode one row)", lambda: compiled.encode(record)),
        ("prediction + explanation (TreeSHAP)", lambda: compiled.attribute(row)),
        ("interval and probability", lambda: compiled.score(record)),
        (
            "the scorer's answer (+ eligibility, warnings)",
            lambda: model.scorer.answer_records([record]),
        ),
        ("answer assembly (per-field notes)", lambda: model.predict([record])),
        ("serialization (response JSON)", lambda: to_json(answer)),
    ]
    rows, result = [], {}
    for name, function in stages:
        micros = median_us(function, args.repeat)
        rows.append([name, micros])
        result[name] = micros
    total = median_us(
        lambda: to_json(model.predict([PatientRequest.model_validate(PATIENT).model_dump()])[0]),
        args.repeat,
    )
    rows.append(["whole answer, end to end", total])
    result["total_us"] = total
    print_table(["stage (nested: later stages include earlier ones)", "median µs"], rows)
    print(f"written to {write_result('inprocess', result)}")


if __name__ == "__main__":
    main()
