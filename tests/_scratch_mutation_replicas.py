import os

import tests.test_replicas as m
from tests.test_replicas import *  # noqa
from tests.test_replicas import _postgres_pairs  # noqa

m.OPERATIONS = 60
orig = m._run_client
MUT = os.environ["MUT"]


async def mutated(index, sessions, load):
    await orig(index, sessions, load)
    if index != 0:
        return
    led = load.ledgers[m.LOAD_USERS[0]]
    if MUT == "update":
        tid = next(iter(led.updates))
        led.updates[tid].pop()
    elif MUT == "create":
        tid = led.order.pop()
        led.created.pop(tid)
    elif MUT == "complete":
        led.completed.pop()
    elif MUT == "stats":
        pass


m._run_client = mutated
