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
