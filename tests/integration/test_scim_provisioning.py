"""An IdP's initial provisioning at small scale: 200 users through ``cvcsync serve``'s ``/scim/v2`` by four clients
at once, Entra ID's probe then create, then a pass of PATCHes (deactivations, updates), against the emulator
throttling and failing a share of CVC's calls, the state in moto's S3. ``bench/bench_scim.py`` runs the same at
10,000 users and measures it; its ``check`` is the oracle here: CVC equals what the IdP sent, every resource reads
back as sent at the version its last write answered, nothing was given up, every 2xx write has a run report with a
written outcome (a failed one names its run, whose report says "retried"), the shadow state holds CVC's users and
none is uncertain, the server logged no error.

200 users, not more: the server takes about 9 creates a second here (2 cores shared by it, moto, the emulator and
the clients), and the test stays near 30 s."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.bench_scim import BUCKET, FAULTS, GROUP_ID, GROUP_NAME, TOKEN, check, provision, served

USERS, CLIENTS = 200, 4


def test_200_users_by_four_clients_under_faults_end_as_the_idp_sent_them(
    function_env: dict[str, str], emulator: Any, moto: Any
) -> None:
    s3 = moto.s3_client(max_pool_connections=32)  # the check reads reports and the journal in parallel
    s3.create_bucket(Bucket=BUCKET)
    env = {
        **function_env,
        "CVCSYNC_STATE_BUCKET": BUCKET,
        "CVCSYNC_SCIM_TOKENS": TOKEN,
        "CVCSYNC_SCIM_MAX_DELETES_PER_HOUR": "1000",  # a tenth of the users is deactivated on purpose
        "CVCSYNC_GROUP_ID": GROUP_ID,
        "CVCSYNC_GROUP_NAME": GROUP_NAME,
        "CVCSYNC_LOG_LEVEL": "WARNING",
        "CVC_MAX_ATTEMPTS": "1",  # every CVC fault reaches the IdP as a 503 it must retry
        "CVCSYNC_HTTP_CIRCUIT_COOLDOWN": "1",  # should five faults in a row open the circuit, it is not for 60 s
    }
    emulator.set_faults(seed=3, **FAULTS)
    with served(env, threads=8) as server:
        run = provision(server.url, USERS, CLIENTS, retry_after_cap=0.2)  # Retry-After 10 s: sooner here
        emulator.set_faults()
        verdict = check(run, server=server, cvc_users=emulator.users(), s3=s3, bucket=BUCKET)

    assert verdict["passed"], verdict["samples"]
    assert verdict["cvcUsers"] == verdict["expectedInCvc"] == USERS - USERS // 10  # a tenth deactivated
    assert verdict["scimUsers"] == USERS and verdict["stateUsers"] == verdict["cvcUsers"]
    statuses = Counter(call.status for call in run.calls)
    assert statuses[503] > 0, statuses  # the faults reached the IdP, and it retried until each write succeeded
    assert set(statuses) <= {200, 201, 429, 503} and statuses[201] == USERS
    writes = Counter(call.kind for call in run.writes)
    assert writes == {"create": USERS, "deactivate": USERS // 10, "update": USERS // 5}
    # Every write has its outcome in a run report: a failed one names its run, whose report says "retried".
    failed = verdict["failedWrites"]
    assert failed["answers"] > 0 and failed["namingRun"] == failed["withReport"] > 0
    assert failed["outcomes"] == {"retried": failed["withReport"]}
    assert verdict["reportOutcomes"]["deleted"] == USERS // 10
