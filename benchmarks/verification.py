"""What checking the token costs: `JwtVerifier.verify` alone, with the key already cached.

Reported beside the no-op call's p50 over stdio, i.e. what one verification adds to a call.
"""

from __future__ import annotations

import time

from benchmarks.report import Row
from benchmarks.stats import p50, verdict
from task_mcp.auth import JwtVerifier
from task_mcp.testing import JwksServer

ALGORITHMS = ("EdDSA", "ES256", "RS256")
ROUNDS = 20
BATCH = 100


async def verification(stand_in: JwksServer, noop_p50: float) -> list[Row]:
    verifier = JwtVerifier(
        jwks_url=stand_in.url,
        issuer=stand_in.base_url,
        audience=stand_in.base_url,
        algorithms=ALGORITHMS,
    )
    tokens = {alg: stand_in.mint("user-000", alg, lifetime=3600) for alg in ALGORITHMS}
    try:
        for token in tokens.values():  # fetch the JWKS once, warm up
            for _ in range(BATCH):
                await verifier.verify(token)
        samples: dict[str, list[float]] = {alg: [] for alg in ALGORITHMS}
        for _ in range(ROUNDS):
            for alg, token in tokens.items():
                for _ in range(BATCH):
                    started = time.perf_counter()
                    await verifier.verify(token)
                    samples[alg].append(time.perf_counter() - started)
        assert verifier.fetch_count == 1  # every verification above used the cached key
    finally:
        await verifier.aclose()

    section = f"Token verification, cached key (JwtVerifier.verify alone; no-op stdio call: {noop_p50 * 1e3:.2f} ms)"
    rows = []
    for alg in ALGORITHMS:
        value = p50(samples[alg])
        rows.append(
            Row(
                section,
                alg + (" (Better Auth default)" if alg == "EdDSA" else ""),
                f"{value * 1e6:.0f} µs",
                value * 1000,
                "≤ 0.3 ms",
                verdict(value * 1000, 0.3),
                f"= {value / noop_p50:.2f}x the no-op call; n={len(samples[alg])}",
                {"p50_s": value},
            )
        )
    return rows
