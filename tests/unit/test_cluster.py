"""The member loop's rules with a fake registry and a fake clock: no Django."""

from scheduler_app.engine import cluster


class FakeRegistry:
    def __init__(self):
        self.fail = False
        self.holder = None
        self.dead = False
        self.incarnations = 0
        self.peers = 1

    def register(self, info):
        self.incarnations += 1
        self.dead = False
        return f"i{self.incarnations}"

    def beat(self, incarnation, report):
        if self.fail:
            raise OSError("database unreachable")
        return cluster.Beat(None if self.dead else "active", self.peers)

    def hold_lease(self, name, incarnation, seconds):
        if self.holder in (None, incarnation):
            self.holder = incarnation
            return True
        return False

    def release_lease(self, name, incarnation):
        if self.holder == incarnation:
            self.holder = None

    def judge_dead(self, node_dead_after):
        return []

    def stopped(self, incarnation):
        pass


def member(registry, clock, events):
    return cluster.Member(
        registry=registry,
        info={"name": "n1"},
        timings=cluster.Timings(heartbeat_interval=1, self_fence_after=4, node_dead_after=6, leader_lease=3),
        report=dict,
        on_lead=lambda: events.append("lead"),
        on_follow=lambda: events.append("follow"),
        on_fence=lambda why: events.append("fence"),
        clock=lambda: clock[0],
    )


def test_a_leader_that_cannot_renew_stops_firing_at_its_local_deadline_then_fences():
    clock, events, registry = [100.0], [], FakeRegistry()
    m = member(registry, clock, events)
    m.join()
    m.tick()
    assert events == ["lead"] and m.is_leader()
    registry.fail = True
    clock[0] = 102.9
    m.tick()  # fails: the lease is not renewed
    m.check_deadlines()
    assert m.is_leader()
    clock[0] = 103.0  # lease taken at 100 for 3 s: stop before the database lets others in
    assert not m.is_leader()
    m.check_deadlines()
    assert events == ["lead", "follow"]
    clock[0] = 104.0  # SELF_FENCE_AFTER (4 s) without a heartbeat
    m.check_deadlines()
    assert events == ["lead", "follow", "fence"]
    registry.fail = False
    m.tick()
    assert not m.fenced and events[-1] == "lead"


def test_a_lone_node_cut_off_keeps_its_runs():
    """No other live node at the last heartbeat: nobody can re-run this node's work, so
    a database outage does not make it stop its runs (they are recorded afterwards)."""
    clock, events, registry = [100.0], [], FakeRegistry()
    registry.peers = 0
    m = member(registry, clock, events)
    m.join()
    m.tick()
    registry.fail = True
    clock[0] = 110.0  # far past SELF_FENCE_AFTER
    m.tick()
    m.check_deadlines()
    assert "fence" not in events and not m.fenced
    assert not m.is_leader()  # it still stops firing: the lease is not renewed
    registry.peers = 1  # a peer appeared before the next outage
    registry.fail = False
    m.tick()
    registry.fail = True
    clock[0] = 115.0
    m.check_deadlines()
    assert events[-1] == "fence"


def test_a_node_declared_dead_fences_and_rejoins_as_a_new_incarnation():
    clock, events, registry = [0.0], [], FakeRegistry()
    m = member(registry, clock, events)
    first = m.join()
    registry.holder = "someone-else"
    m.tick()
    assert events == [] and not m.is_leader()
    registry.dead = True
    m.tick()
    assert events == ["fence"] and m.incarnation != first and not m.fenced


def test_a_renewal_that_ends_past_the_deadline_restarts_the_trigger_side():
    """The beat blocked (a slow or hung statement) past the local lease deadline, then
    the renewal succeeded: fires were refused meanwhile (``is_leader`` was false), so the
    trigger side must restart from the recorded fire times, not carry on past them."""
    clock, events, registry = [100.0], [], FakeRegistry()
    m = member(registry, clock, events)
    m.join()
    m.tick()
    assert events == ["lead"]
    slow_beat = registry.beat

    def beat(incarnation, report):
        clock[0] += 2.5  # lease taken at 100 for 3 s; the renewal runs from 101 to 103.5
        return slow_beat(incarnation, report)

    registry.beat = beat
    clock[0] = 101.0
    m.tick()
    assert events == ["lead", "follow", "lead"]
    assert m.is_leader()
    registry.beat = slow_beat
    clock[0] = 103.6  # lease until 104 (renewal sent at 101)
    m.tick()  # a renewal in time changes nothing
    assert events == ["lead", "follow", "lead"]


def test_a_renewal_in_time_keeps_the_trigger_side():
    clock, events, registry = [100.0], [], FakeRegistry()
    m = member(registry, clock, events)
    m.join()
    m.tick()
    slow_beat = registry.beat

    def beat(incarnation, report):
        clock[0] += 1.9  # started at 101, ends at 102.9: before the deadline of 103
        return slow_beat(incarnation, report)

    registry.beat = beat
    clock[0] = 101.0
    m.tick()
    assert events == ["lead"] and m.is_leader()


class ExpiringRegistry(FakeRegistry):
    """A lease held by someone else that expires ``expires_in`` seconds from now."""

    def __init__(self, expires_in):
        super().__init__()
        self.holder = "the-leader"
        self.expires_in = expires_in
        self.asked = 0

    def lease_expires_in(self, name):
        self.asked += 1
        return self.expires_in


def test_a_follower_tries_the_lease_the_moment_it_expires():
    """Not up to a heartbeat later: a dead leader is replaced within LEADER_LEASE of its
    last renewal."""
    clock, events, registry = [100.0], [], ExpiringRegistry(expires_in=0.4)
    m = member(registry, clock, events)  # heartbeat 1 s, lease 3 s: renewals every 1 s
    m.join()
    m.tick()
    assert not m.is_leader() and registry.asked == 1
    assert m.lease_retry_at == 100.0 + 0.4 + cluster.LEASE_RETRY_SLACK
    # The loop's next pass at that time ticks again; the leader is gone by then.
    registry.holder = None
    clock[0] = m.lease_retry_at
    m.tick()
    assert events == ["lead"] and m.is_leader() and m.lease_retry_at is None


def test_a_lease_far_from_expiry_waits_for_the_heartbeat_and_a_past_one_is_not_a_busy_loop():
    clock, events, registry = [100.0], [], ExpiringRegistry(expires_in=2.5)
    m = member(registry, clock, events)
    m.join()
    m.tick()
    assert m.lease_retry_at is None  # beyond the next heartbeat (1 s): nothing sooner
    registry.expires_in = -5.0  # expired, but the takeover did not succeed (a lock wait)
    m.tick()
    assert m.lease_retry_at == 100.0 + cluster.LEASE_RETRY_MIN


def test_the_loop_ticks_at_the_retry_time(monkeypatch):
    """The member thread runs a tick at ``lease_retry_at`` even when the next heartbeat
    is later."""
    registry = ExpiringRegistry(expires_in=0.3)
    events = []
    m = cluster.Member(
        registry=registry,
        info={"name": "n1"},
        timings=cluster.Timings(
            heartbeat_interval=5, self_fence_after=10, node_dead_after=20, leader_lease=30
        ),
        report=dict,
        on_lead=lambda: events.append("lead"),
        on_follow=lambda: events.append("follow"),
        on_fence=lambda why: events.append("fence"),
    )
    m.join()
    m.start()
    try:
        import time

        deadline = time.monotonic() + 3
        while registry.asked < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        registry.holder = None  # the holder died; its lease expires 0.3 s after the first tick
        while not m.is_leader() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.is_leader(), "the follower waited for its next heartbeat (5 s)"
    finally:
        m.close()


def test_the_retry_is_counted_from_when_the_expiry_was_measured():
    """A takeover that waited a second on a lock (an old leader's fires being written)
    must not make the retry due at once: counted from the answer, not the tick's start."""
    clock, events = [100.0], []
    registry = ExpiringRegistry(expires_in=-0.5)  # expired; the takeover gave up
    slow_hold = registry.hold_lease

    def hold_lease(name, incarnation, seconds):
        clock[0] += 1.0  # the takeover's lock wait
        return slow_hold(name, incarnation, seconds)

    registry.hold_lease = hold_lease
    m = member(registry, clock, events)
    m.join()
    m.tick()
    assert clock[0] == 101.0 and m.lease_retry_at == 101.0 + cluster.LEASE_RETRY_MIN
