"""RSS per idle authenticated socket at 10k sockets, ``symphainy up`` vs a bare app.

For each case, a fresh server of each kind (the real ``symphainy up``, and the bare FastAPI +
uvicorn app admitting on JWT alone, bench/ws_harness.py) is warmed with a few sockets opened and
closed, its RSS read (the process and its children, nats-server excepted), then N sockets are
opened and admitted (each answers a ping), and the RSS read again: (after - before) / N. The
client always offers permessage-deflate, as browsers do. The cases:

- ``idle``: the default settings, nothing sent after admission;
- ``off+msg``: the server refuses deflate (ours: ``ws_per_message_deflate=false``), then one
  frame each way, then idle;
- ``on+msg``: the server accepts deflate (uvicorn's own default), one frame each way (both
  compressed), then idle. ``on+msg`` - ``off+msg`` is what deflate costs a socket: wsproto makes
  its zlib objects on the first compressed frame and keeps them (context takeover).

The bare app accepts deflate exactly when ours does in the same case, so the ratio is the
gate's overhead. The goals are read on ``default+msg``: ``off+msg`` or ``on+msg``, whichever
ours negotiated in ``idle`` (its default), a socket a browser has used and left idle.
The settings changed: ``ws_max_per_session``/``ws_max_per_user`` raised so one session may hold
N sockets (the limits are counts; they change no socket's memory).
Run: ``.venv/bin/python bench/socket_rss.py [--n 10000] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import ws_harness

GOAL_RATIO = 1.05
GOAL_KB = 45.0
WARMUP = 200
DEFLATE_ENV = "SYMPHAINY_WS_PER_MESSAGE_DEFLATE"
# Case -> (ours' deflate setting, None: the default; a frame each way after admission?)
CASES: dict[str, tuple[bool | None, bool]] = {
    "idle": (None, False),
    "off+msg": (False, True),
    "on+msg": (True, True),
}
# Not a valid client frame for ours (it answers with an error frame, no NATS), any for the bare.
MESSAGE = '{"type": "hello", "id": "rss", "payload": {"text": "an idle socket says hello"}}'


async def _per_socket_kb(
    server: ws_harness.Server, token: str, n: int, message: bool
) -> tuple[float, bool]:
    """(KB a socket, whether deflate was negotiated); stops the server."""
    warm = await ws_harness.open_many(server.address, [token], WARMUP, deflate=True)
    await ws_harness.close_all(warm)
    before = server.rss_kb()
    sockets = await ws_harness.open_many(server.address, [token], n, deflate=True)
    negotiated = {s.deflate for s in sockets}
    if len(negotiated) != 1:
        raise RuntimeError("permessage-deflate negotiated on some sockets only")
    if message:
        for sock in sockets:
            sock.send_text(MESSAGE, compress=True)
        await asyncio.gather(*(s.inbox.get() for s in sockets))
    after = server.rss_kb()
    await server.stop()
    for sock in sockets:
        sock.abort()
    return (after - before) / n, negotiated.pop()


async def main(n: int, repeats: int) -> None:
    limit = str(n + WARMUP)
    env = {"SYMPHAINY_WS_MAX_PER_SESSION": limit, "SYMPHAINY_WS_MAX_PER_USER": limit}
    ours: dict[str, list[float]] = {case: [] for case in CASES}
    floor: dict[str, list[float]] = {case: [] for case in CASES}
    default_deflate = False
    async with ws_harness.stack(env) as stack:
        token = (await ws_harness.login_admin(stack, stack.up.url))["session_token"]
        await stack.up.stop()
        for r in range(repeats):
            for case, (setting, message) in CASES.items():
                extra = {} if setting is None else {DEFLATE_ENV: str(setting).lower()}
                up = await stack.start_up(f"up-{case}-{r}", extra)
                per_socket, deflate = await _per_socket_kb(up, token, n, message)
                if setting is not None and deflate != setting:
                    raise RuntimeError(f"{DEFLATE_ENV}={setting} but deflate negotiated: {deflate}")
                if setting is None:
                    default_deflate = deflate
                ours[case].append(per_socket)
                bare = await stack.start_bare(f"bare-{case}-{r}", deflate=deflate)
                floor[case].append((await _per_socket_kb(bare, token, n, message))[0])
                print(
                    f"round {r + 1} {case:<8} (deflate {'on' if deflate else 'off'}) "
                    f"ours {ours[case][-1]:6.1f} KB, bare {floor[case][-1]:6.1f} KB a socket",
                    flush=True,
                )
    kb = {case: (statistics.median(ours[case]), statistics.median(floor[case])) for case in CASES}
    print(f"RSS per idle authenticated socket, {n} sockets, median of {repeats} fresh servers")
    print(f"ours' default: permessage-deflate {'on' if default_deflate else 'off'}")
    print(f"{'case':<9} {'symphainy up':>13} {'bare app':>10} {'ratio':>7}")
    for case, (mine, bare_kb) in kb.items():
        print(f"{case:<9} {mine:>10.1f} KB {bare_kb:>7.1f} KB {mine / bare_kb:>6.2f}x")
    for kind, index in (("symphainy up", 0), ("bare app", 1)):
        cost = kb["on+msg"][index] - kb["off+msg"][index]
        print(f"permessage-deflate after one message each way, {kind}: {cost:+.1f} KB a socket")
    mine, bare_kb = kb["on+msg" if default_deflate else "off+msg"]
    print(ws_harness.result_line("socket_rss_ratio", mine / bare_kb, "<=", GOAL_RATIO))
    print(ws_harness.result_line("socket_rss_kb", mine, "<=", GOAL_KB))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 sockets, one repeat")
    args = parser.parse_args()
    quick = args.quick
    asyncio.run(main(2000 if quick else args.n, 1 if quick else args.repeats))
