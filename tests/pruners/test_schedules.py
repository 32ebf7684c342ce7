import pytest

from compressor.errors import CompressorError
from pruners import Schedule


def test_oneshot_reaches_the_target_at_once():
    s = Schedule("oneshot")
    assert s.ramp(0, 5)(0.9) == 0.9 and s.updates_at(0, 5) and not s.updates_at(1, 5)


def test_iterative_rounds_are_geometric_and_end_at_the_target():
    s = Schedule("iterative", rounds=3)
    values = [s.ramp(e, 6)(0.99) for e in range(6)]
    assert values[-1] == pytest.approx(0.99)
    assert values[0] == pytest.approx(1 - 0.01 ** (1 / 3))
    assert [s.updates_at(e, 6) for e in range(6)] == [True, False, True, False, True, False]
    with pytest.raises(CompressorError, match="`rounds`"):
        s.check(2)


def test_cubic_follows_zhu_and_gupta():
    s = Schedule("cubic")
    assert [round(s.ramp(e, 4)(0.8), 6) for e in range(4)] == [round(0.8 * (1 - (1 - t / 4) ** 3), 6)
                                                               for t in (1, 2, 3, 4)]


@pytest.mark.parametrize("kind", ["iterative", "cubic"])
def test_step_points_one_epoch_apart_are_the_epoch_schedule(kind):
    s, steps = Schedule(kind, rounds=2), 7
    for e in range(4):
        assert s.fraction(e * steps, 4 * steps, steps) == s.fraction(e, 4)
        assert s.updates_at(e * steps, 4 * steps, steps) == s.updates_at(e, 4)


def test_cubic_on_step_progress_ends_at_the_target_at_the_last_point():
    s = Schedule("cubic")
    length, span = 20, 6  # points at 0, 6, 12, 18: the last one reaches the target
    assert Schedule.points(length, span) == 4
    assert [s.fraction(p, length, span) for p in (0, 6, 12, 18)] == [0.3, 0.6, 0.9, 1.0]
    assert s.ramp(18, length, span)(0.9) == 0.9 and s.ramp(0, length, span)(0.9) == pytest.approx(0.9 * (1 - 0.7 ** 3))


def test_iterative_rounds_on_steps_may_outnumber_epochs_but_not_update_points():
    s = Schedule("iterative", rounds=3)
    # 20 steps, a point every 4: rounds start at the first point past 0, 1/3 and 2/3 of the phase (0, 8, 16)
    assert [p for p in range(0, 20, 4) if s.updates_at(p, 20, 4)] == [0, 8, 16]
    assert s.fraction(16, 20, 4) == 1.0
    s.check(1, points=5)  # 3 rounds in a 1-epoch phase: fine on steps
    with pytest.raises(CompressorError, match="`update_every`"):
        s.check(1, points=2)
    with pytest.raises(CompressorError, match="`rounds`"):
        s.check(1)
