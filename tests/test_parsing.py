import pytest

from compressor.errors import CompressorError
from compressor.parsing import parse_eps


@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), ("0.031", 0.031), ("2e-2", 0.02), (" 1 / 4 ", 0.25)])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "-1", "0", "8/0", "1/2/3", "nan", ""])
def test_parse_eps_rejects(text):
    with pytest.raises(CompressorError):
        parse_eps(text)


def test_zero_allowed_when_asked():
    assert parse_eps("0", allow_zero=True) == 0.0


def test_parse_float_list():
    from compressor.parsing import parse_float_list

    assert parse_float_list(" 0.9, 1e-2 ,3", name="--x") == [0.9, 0.01, 3.0]
    assert parse_float_list(" ", name="--x", allow_empty=True) == []
    for text, needle in (("", "--x is empty"), ("0.9,,1", "empty item"), ("0.9,a", "not a comma-separated list")):
        with pytest.raises(CompressorError, match=needle):
            parse_float_list(text, name="--x")
