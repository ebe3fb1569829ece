"""The registry benchmark's section of docs/benchmarks.md: the figures of one run of scripts/bench_registry.py with
their baselines, ratios, the machine and the command."""

from __future__ import annotations

import argparse
import time

from scripts.bench_common import machine, record


def write_docs(
    args: argparse.Namespace,
    r: dict[str, float],
    notes: dict[str, str],
    rows: dict[str, int],
    described: str,
    profile: list[tuple[str, float, float]],
) -> None:
    section = "## Registry: ingest and search (scripts/bench_registry.py)"
    command = (
        f".venv/bin/python scripts/bench_registry.py --reports {args.reports} --patients {args.patients} "
        f"--per-bundle {args.per_bundle} --clients {args.clients} --workers {args.workers} --queries {args.queries} "
        f"--search-clients {args.search_clients} --seconds {args.seconds} --write-docs"
    )
    c = args.search_clients
    body = (
        f"\n### {time.strftime('%Y-%m-%d %H:%M')} UTC — {args.reports:,} reports, {args.patients:,} patients, "
        f"{args.per_bundle} reports per Bundle, with baselines\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n- PostgreSQL: {described}\n"
        f"- registry: {args.workers} uvicorn workers; the registry, PostgreSQL and the load generator share the cores\n"
        f"- stored per report: {r['stored_rows_per_report']:.1f} rows ("
        + ", ".join(f"`{t}` {n:,}" for t, n in rows.items())
        + ")\n\n"
        "| figure | registry | baseline | ratio | aim |\n|---|---|---|---|---|\n"
        f"| ingest, {args.clients} kept-alive client processes | {r['ingest_reports_per_s']:.0f} reports/s "
        f"({r['ingest_seconds']:.0f} s; Bundle p50 {r['bundle_p50_ms']:.0f} ms, p99 {r['bundle_p99_ms']:.0f} ms; "
        f"connections per worker {notes['ingest']}; load average {r['loadavg_ingest']:.1f}; cores busy: ours "
        f"{r['ingest_cores_ours']:.2f}, others {r['ingest_cores_others']:.2f}, steal {r['ingest_cores_steal']:.2f}) "
        "| "
        f"`COPY … FROM STDIN` of the same rows into empty copies (same indexes): {r['copy_reports_per_s']:.0f} "
        f"reports/s ({r['copy_seconds']:.1f} s) | {r['ratio_ingest_copy']:.3f} | ≥ 1,000 reports/s |\n"
        f"| ingest vs validation | {r['ingest_reports_per_s']:.0f} reports/s | fhir.resources R4B `model_validate` "
        f"of the same resources, one core: {r['validation_reports_per_s']:.0f} reports/s | "
        f"{r['ratio_ingest_validation']:.3f} | |\n"
        f"| CPU per report: the registry's workers / PostgreSQL's backends | {r['ingest_registry_cpu_ms']:.2f} ms / "
        f"{r['ingest_postgres_cpu_ms']:.2f} ms | | | |\n"
        f"| the load generator's CPU per report | {r['client_cpu_ms_per_report']:.3f} ms in the send loops "
        f"({r['client_processes_cpu_ms_per_report']:.3f} ms with the processes' start) | | | |\n"
        f"| the largest registry process's peak RSS (`VmHWM`) over the whole run | "
        f"{r['registry_peak_rss_mib']:.0f} MiB | | | ≤ 300 MB |\n"
    )
    for kind, label in (("search", "`DiagnosticReport?patient.identifier=<system>\\|<national id>`"),
                        ("read", "`DiagnosticReport/<id>`"),
                        ("portal", "the patient's portal page `/portal` (signed in, HTML)")):  # fmt: skip
        for n in (1, c):
            k = f"{kind}_{n}c"
            cell = (
                f"p50 {r[f'{k}_p50_ms']:.1f} ms, **p99 {r[f'{k}_p99_ms']:.1f} ms** (mean {r[f'{k}_mean_ms']:.1f}, "
                f"max {r[f'{k}_max_ms']:.0f} ms; {r[f'{k}_calls_per_s']:.0f} calls/s; client CPU "
                f"{r[f'{k}_client_cpu_ms']:.3f} ms per call; CPU per call: registry "
                f"{r[f'{k}_registry_cpu_ms']:.2f} ms, PostgreSQL {r[f'{k}_postgres_cpu_ms']:.2f} ms; connections per "
                f"worker {notes[k]}; load average "
                f"{r[f'{k}_loadavg']:.1f}; cores busy: ours {r[f'{k}_cores_ours']:.2f}, others "
                f"{r[f'{k}_cores_others']:.2f}, steal {r[f'{k}_cores_steal']:.2f}; autovacuum at half time: "
                f"{notes[f'{k}_autovacuum']})"
            )
            if f"{k}_wrk_p99_ms" in r:
                cell += (
                    f"; wrk, corrected for coordinated omission: p50 {r[f'{k}_wrk_p50_ms']:.1f} ms, p99 "
                    f"{r[f'{k}_wrk_p99_ms']:.1f} ms, {r[f'{k}_wrk_calls_per_s']:.0f} calls/s"
                )
            if n == 1:
                cell += (
                    f"; sequential, each answer checked: p50 {r[f'{kind}_seq_p50_ms']:.1f} ms, p99 "
                    f"{r[f'{kind}_seq_p99_ms']:.1f} ms"
                )
                body += f"| {label}, one client | {cell} | | | {'p99 < 20 ms' if kind == 'search' else ''} |\n"
            else:
                body += f"| {label}, {c} clients | {cell} | one client's p99 | {r[f'{kind}_ratio_p99']:.1f}× | ≤ 3× |\n"
    body += (
        "\nThe ingest pushes every Bundle once, each from a client process with one kept-alive connection (the Bundles "
        "are made before the clock starts). The COPY baseline is the rows the run added to every table whose row count "
        "grew, dumped with `COPY (SELECT …) TO STDOUT` after the ingest and loaded in one transaction after a "
        "CHECKPOINT; it is the floor of writing what the registry writes, without parsing, validation, look-ups or the "
        "per-Bundle transactions. PostgreSQL was VACUUM ANALYZEd and CHECKPOINTed before the latency runs. The "
        "“cores busy” figures split the machine's CPU during each run into ours (the registry's processes, "
        "PostgreSQL's when it is the benchmark's own cluster, the benchmark and its load generators), everything "
        "else running on the shared machine meanwhile, and steal: time the hypervisor gave the virtual cores to "
        "others outside this machine. Latency is timed per request by keep-alive client processes (`http.client`, "
        "one per client, each request after the last); wrk's figures beside them are corrected for coordinated "
        "omission — it adds samples for the requests an open-loop client would have sent during a stall — and so are "
        "not the requests made.\n"
    )
    if profile:
        body += (
            "\nWhere the registry's time goes during the ingest (py-spy, the workers' samples; idle waits left "
            "out):\n\n| function | own | on the stack |\n|---|---|---|\n"
            + "".join(f"| `{name}` | {own * 100:.1f} % | {anywhere * 100:.1f} % |\n" for name, anywhere, own in profile)
        )
    record(section, body)
