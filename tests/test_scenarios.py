"""Load scenarios on a real engine workload (onnxruntime on a tiny ONNX model) and on sleep clients whose
service time is known."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from infermeter.errors import BadInput
from infermeter.scenarios import Budget, Load, ScenarioResult, run_scenario

FEATURES = 64


@pytest.fixture(scope="module")
def ort_session():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from _tiny_models import matmul_relu_session

    return matmul_relu_session(FEATURES)


def ort_load(sess, batch_size: int, n_clients: int = 1) -> Load:
    pool = [np.random.default_rng(i).normal(size=(batch_size, FEATURES)).astype(np.float32) for i in range(4)]

    def client(x):
        return sess.run(None, {"x": x})

    return Load([client] * n_clients, lambda i: pool[i % len(pool)], batch_size)


def sleep_client(seconds: float):
    def client(_):
        time.sleep(seconds)

    return client


def assert_consistent(r: ScenarioResult, name: str, batch_size: int) -> None:
    assert r.scenario == name
    assert r.latencies_ms.shape == (r.requests,) == r.issue_times_s.shape
    assert r.requests > 0 and r.items == r.requests * batch_size
    assert np.all(r.latencies_ms > 0)
    assert r.t_start < r.t_end and r.duration_s == pytest.approx(r.t_end - r.t_start)
    assert r.throughput_items_s == pytest.approx(r.items / r.duration_s)
    assert r.achieved_qps == pytest.approx(r.requests / r.duration_s)
    # issue order, inside the measured window, and each request finished inside it too
    assert np.all(np.diff(r.issue_times_s) >= 0)
    assert r.issue_times_s[0] >= 0
    assert np.all(r.issue_times_s + r.latencies_ms / 1e3 <= r.duration_s + 1e-9)
    for q in (50, 90, 95, 99):
        assert r.stats[f"latency_ms_p{q}"] == pytest.approx(np.percentile(r.latencies_ms, q))
    assert r.stats["latency_ms_mean"] == pytest.approx(r.latencies_ms.mean())
    assert r.stats["latency_ms_min"] == r.latencies_ms.min() and r.stats["latency_ms_max"] == r.latencies_ms.max()
    assert r.ci95_rel >= 0


@pytest.mark.parametrize("name", ["offline", "single-stream", "multi-stream", "server"])
def test_every_scenario_runs_an_onnxruntime_session_with_consistent_fields(ort_session, name):
    sess, _ = ort_session
    batch = 1 if name == "single-stream" else 4
    load = ort_load(sess, batch, n_clients=2)
    r = run_scenario(name, load, Budget(warmup=3, iterations=40), target_qps=200, latency_bound_ms=1000)
    assert_consistent(r, name, batch)
    assert r.requests == 40
    assert r.streams == (1 if name == "single-stream" else 2)  # offline keeps every client it is given busy
    assert r.latency_bound_met is True  # 1 s is far above a 64x64 matmul
    assert r.warmup.requests == 3 * r.streams
    assert r.stop.reason == "iterations"


def test_client_really_runs_the_model(ort_session):
    # the harness must hand the staged inputs to the client: compare a recorded output with numpy's answer
    sess, w = ort_session
    load = ort_load(sess, 2)
    seen = []

    def recording_client(x):
        out = load.clients[0](x)
        seen.append((x, out[0]))
        return out

    run_scenario("offline", Load([recording_client], load.inputs, 2), Budget(warmup=0, iterations=5))
    x, y = seen[-1]
    np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-4, atol=1e-4)


def test_warmup_is_not_measured():
    calls = []
    client = lambda x: calls.append(x)  # noqa: E731
    r = run_scenario("single-stream", Load([client], lambda i: i, 1), Budget(warmup=7, iterations=13))
    assert len(calls) == 7 + 13 and r.requests == 13


def test_time_budget_runs_long_enough_and_at_least_min_iterations():
    service_s = 0.02
    load = Load([sleep_client(service_s)], lambda i: i, 1)
    r = run_scenario("offline", load, Budget(warmup=0, time_s=0.05, min_iterations=10))
    assert r.requests >= 10
    assert r.duration_s >= 10 * service_s
    r2 = run_scenario("single-stream", load, Budget(warmup=0, time_s=0.4, min_iterations=1))
    assert r2.duration_s >= 0.4 and r2.stop.reason == "time"


def test_latency_of_a_sleep_client_is_its_service_time():
    service_s = 0.01
    r = run_scenario("single-stream", Load([sleep_client(service_s)], lambda i: i, 1), Budget(warmup=1, iterations=30))
    # sleep never returns early; the overshoot on an idle Linux box is well under a few ms
    assert r.stats["latency_ms_min"] >= service_s * 1e3
    assert r.stats["latency_ms_p50"] == pytest.approx(service_s * 1e3, rel=0.3)


def test_ci_rule_stops_sooner_for_steady_than_for_jittery_service():
    rng = np.random.default_rng(0)
    lock = threading.Lock()

    def jittery(_):
        with lock:
            s = rng.lognormal(np.log(0.002), 0.8)
        time.sleep(s)

    # the jittery client (CV ~ 0.9) needs thousands of requests for 3%, so it runs into max_time
    budget = Budget(warmup=2, target_ci=0.03, max_time_s=2.0)
    steady = run_scenario("offline", Load([sleep_client(0.002)], lambda i: i, 1), budget)
    noisy = run_scenario("offline", Load([jittery], lambda i: i, 1), budget)
    assert steady.stop.ci_target_reached is True and steady.stop.reason == "ci"
    assert steady.ci95_rel <= 0.03
    assert steady.requests < noisy.requests and steady.duration_s < noisy.duration_s


def test_ci_rule_honours_max_time():
    rng = np.random.default_rng(1)
    lock = threading.Lock()

    def very_jittery(_):
        with lock:
            s = rng.exponential(0.003)
        time.sleep(s)

    max_time = 0.6
    t0 = time.perf_counter()
    r = run_scenario("single-stream", Load([very_jittery], lambda i: i, 1),
                     Budget(warmup=0, target_ci=0.001, max_time_s=max_time))
    wall = time.perf_counter() - t0
    assert r.stop.ci_target_reached is False and r.stop.reason == "max_time"
    assert r.ci95_rel > 0.001
    assert max_time <= r.duration_s < max_time + 0.1 and wall < max_time + 0.5


def test_multi_stream_throughput_scales_with_streams_of_sleep_clients():
    service_s = 0.01
    results = {}
    for n in (1, 4):
        load = Load([sleep_client(service_s) for _ in range(n)], lambda i: i, 1)
        results[n] = run_scenario("multi-stream", load, Budget(warmup=1, time_s=0.5))
        assert_consistent(results[n], "multi-stream", 1)
        assert results[n].streams == n
    ratio = results[4].throughput_items_s / results[1].throughput_items_s
    assert 3.3 < ratio < 4.3
    # per-request latency stays the service time: the streams do not queue behind each other
    assert results[4].stats["latency_ms_p50"] == pytest.approx(results[1].stats["latency_ms_p50"], rel=0.3)


def test_multi_stream_starts_streams_together_and_leaves_no_threads():
    before = threading.active_count()
    n, service_s = 4, 0.02
    load = Load([sleep_client(service_s) for _ in range(n)], lambda i: i, 1)
    r = run_scenario("multi-stream", load, Budget(warmup=0, iterations=4 * n))
    assert threading.active_count() == before
    # one request per stream started at once: the first n issue times lie within a fraction of a service time
    assert r.issue_times_s[n - 1] - r.issue_times_s[0] < service_s / 2
    assert r.requests == 4 * n


def test_multi_stream_reraises_a_client_failure_and_joins_every_thread():
    before = threading.active_count()

    def broken(_):
        raise ValueError("engine fell over")

    load = Load([sleep_client(0.005), broken, sleep_client(0.005)], lambda i: i, 1)
    with pytest.raises(ValueError, match="engine fell over"):
        run_scenario("multi-stream", load, Budget(warmup=0, time_s=1.0))
    assert threading.active_count() == before


def test_server_achieves_the_target_rate():
    target_qps = 20.0
    load = Load([sleep_client(0.005), sleep_client(0.005)], lambda i: i, 1)
    r = run_scenario("server", load, Budget(warmup=1, time_s=3.0), target_qps=target_qps, seed=3)
    assert_consistent(r, "server", 1)
    assert r.achieved_qps == pytest.approx(target_qps, rel=0.05)
    assert r.server.dropped == 0
    # arrivals look Poisson: inter-arrival coefficient of variation near 1 (60 gaps: loose bounds)
    gaps = np.diff(r.issue_times_s)
    assert 0.6 < gaps.std() / gaps.mean() < 1.4


def test_server_latency_includes_queueing():
    # one worker, 8 ms service, 100 qps: utilisation 0.8, so requests wait behind each other
    service_s, qps = 0.008, 100.0
    r = run_scenario("server", Load([sleep_client(service_s)], lambda i: i, 1), Budget(warmup=1, time_s=2.0),
                     target_qps=qps, seed=1)
    assert r.stats["latency_ms_min"] >= service_s * 1e3
    # M/D/1 mean sojourn: service + rho / (2 mu (1 - rho)) = 8 + 16 ms; ask only for clear queueing
    assert r.stats["latency_ms_mean"] > 1.3 * service_s * 1e3
    assert r.server.queue_wait_ms_mean > 0
    assert r.stats["latency_ms_mean"] == pytest.approx(
        r.server.queue_wait_ms_mean + r.server.service_ms_mean, rel=0.1)


def test_server_latency_bound_and_seeded_schedule():
    load = Load([sleep_client(0.004)], lambda i: i, 1)
    budget = Budget(warmup=0, iterations=30)
    tight = run_scenario("server", load, budget, target_qps=50, latency_bound_ms=1.0, seed=5)
    loose = run_scenario("server", load, budget, target_qps=50, latency_bound_ms=2000.0, seed=5)
    other = run_scenario("server", load, budget, target_qps=50, seed=6)
    assert tight.latency_bound_met is False and loose.latency_bound_met is True and other.latency_bound_met is None
    # scheduled arrivals are the issue times: identical for one seed, different for another
    np.testing.assert_allclose(tight.issue_times_s, loose.issue_times_s, atol=1e-9)
    assert not np.allclose(tight.issue_times_s, other.issue_times_s)


def test_bad_requests_say_why():
    load = Load([sleep_client(0)], lambda i: i, 1)
    with pytest.raises(BadInput, match="unknown scenario"):
        run_scenario("burst", load, Budget())
    with pytest.raises(BadInput, match="target_qps"):
        run_scenario("server", load, Budget())
    with pytest.raises(BadInput):
        Budget(iterations=0)
    with pytest.raises(BadInput):
        Budget(target_ci=1.5)
    with pytest.raises(BadInput):
        Load([], lambda i: i, 1)
    assert Budget().rule == "time" and Budget().min_time_s == 2.0
    assert Budget(iterations=5, target_ci=0.01).rule == "iterations"
