"""The referral rules (services/referrals/domain.py): pure, no I/O, many cases."""

from __future__ import annotations

import random

import pytest

from services.referrals.domain import Source, check_new_referral
from shared.errors import ValidationFailed
from shared.identifiers import nhs_number_is_valid, normalise_nhs_number
from tests.helpers import synthetic_nhs_number

WEIGHTS = range(10, 1, -1)  # digits 1-9 weighted 10..2 (NHS Data Dictionary, Modulus 11)


def mod11_check(first_nine: str) -> int:
    """The check digit computed independently of the code under test (10 means invalid)."""
    total = sum(int(d) * w for d, w in zip(first_nine, WEIGHTS, strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else check


def prefixes_with_check(value: int, rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        prefix = "".join(str(rng.randrange(10)) for _ in range(9))
        if mod11_check(prefix) == value:
            out.append(prefix)
    return out


# 9434765919: 9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299; 299 mod 11 = 2; 11-2 = 9
# 9434765870: ... = 308; 308 mod 11 = 0; 11-0 = 11 -> check digit 0
KNOWN_VALID = ["9434765919", "9434765870", "4010232137", "9990000018"]


def test_the_independent_oracle_agrees_with_the_worked_examples() -> None:
    assert mod11_check("943476591") == 9
    assert mod11_check("943476587") == 0
    assert mod11_check("401023213") == 7
    assert mod11_check("999000001") == 8


class TestNhsNumberIsValid:
    @pytest.mark.parametrize("number", KNOWN_VALID)
    def test_known_valid_numbers_are_valid(self, number: str) -> None:
        assert nhs_number_is_valid(number) is True

    def test_check_digit_eleven_becomes_zero_and_is_valid(self) -> None:
        assert mod11_check("943476587") == 0  # 11 - (308 mod 11) == 11
        assert nhs_number_is_valid("9434765870") is True
        for d in "123456789":
            assert nhs_number_is_valid("943476587" + d) is False

    def test_many_numbers_whose_check_digit_is_zero_are_valid(self) -> None:
        for prefix in prefixes_with_check(0, random.Random(11), 50):
            assert nhs_number_is_valid(prefix + "0"), prefix

    def test_a_prefix_whose_check_would_be_ten_is_invalid_with_every_last_digit(self) -> None:
        prefixes = prefixes_with_check(10, random.Random(10), 50)
        assert prefixes
        for prefix in prefixes:
            for last in "0123456789":
                assert nhs_number_is_valid(prefix + last) is False, prefix + last

    def test_a_known_check_ten_prefix_is_invalid(self) -> None:
        # 000000006: 6*2 = 12; 12 mod 11 = 1; 11 - 1 = 10 -> no valid check digit
        assert mod11_check("000000006") == 10
        for last in "0123456789":
            assert nhs_number_is_valid("000000006" + last) is False

    def test_one_hundred_synthetic_numbers_from_the_999_range_are_valid(self) -> None:
        rng = random.Random(999)
        numbers = {synthetic_nhs_number(rng) for _ in range(100)}
        assert len(numbers) > 90
        for n in numbers:
            assert n.startswith("999") and len(n) == 10
            assert nhs_number_is_valid(n) is True, n

    def test_agrees_with_an_independent_computation_on_random_numbers(self) -> None:
        rng = random.Random(2024)
        for _ in range(2000):
            n = "".join(str(rng.randrange(10)) for _ in range(10))
            expected = mod11_check(n[:9]) == int(n[9])
            assert nhs_number_is_valid(n) is expected, n

    @pytest.mark.parametrize("number", KNOWN_VALID + ["9990000026"])
    def test_every_single_digit_corruption_is_invalid(self, number: str) -> None:
        assert nhs_number_is_valid(number)
        for pos in range(10):
            for d in "0123456789":
                if d == number[pos]:
                    continue
                corrupted = number[:pos] + d + number[pos + 1 :]
                assert nhs_number_is_valid(corrupted) is False, (pos, corrupted)

    def test_every_synthetic_number_loses_validity_under_any_single_digit_change(self) -> None:
        rng = random.Random(7)
        for _ in range(20):
            n = synthetic_nhs_number(rng)
            for pos in range(10):
                d = str((int(n[pos]) + rng.randrange(1, 10)) % 10)
                assert nhs_number_is_valid(n[:pos] + d + n[pos + 1 :]) is False

    @pytest.mark.parametrize(
        "value",
        ["", "943476591", "94347659190", "943476591 9 0", "1", "0" * 11, "94347659199434765919"],
    )
    def test_wrong_length_is_invalid(self, value: str) -> None:
        assert nhs_number_is_valid(value) is False

    @pytest.mark.parametrize(
        "value",
        [
            "943476591A",
            "A434765919",
            "94347 65919x",
            "abcdefghij",
            "943-476-5919",
            "9434765919.",
            "+943476591",
            "94347659l9",
            "943476591\u0000",
        ],
    )
    def test_letters_and_punctuation_are_invalid(self, value: str) -> None:
        assert nhs_number_is_valid(value) is False

    def test_spaces_between_groups_are_ignored(self) -> None:
        assert nhs_number_is_valid("943 476 5919") is True
        assert nhs_number_is_valid(" 9434765919 ") is True

    @pytest.mark.parametrize("value", ["9434765919\n", "9434765919\t", "\n9434765919"])
    def test_other_whitespace_is_not_silently_accepted(self, value: str) -> None:
        # Python's `$` matches before a trailing newline; a number with one must not pass as
        # valid (it would be stored with the newline and pseudonymised as another patient)
        assert nhs_number_is_valid(value) is False

    @pytest.mark.parametrize(
        "value",
        [
            # Arabic-Indic 9434765919
            "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669",
            "\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19",  # full-width 9434765919
            "\u096f\u096a\u0969\u096a\u096d\u096c\u096b\u096f\u0967\u096f",  # Devanagari 9434765919
        ],
    )
    def test_non_ascii_digits_are_invalid(self, value: str) -> None:
        # `\d` matches any Unicode digit; an NHS number is ASCII 0-9 only
        assert nhs_number_is_valid(value) is False


class TestNormaliseNhsNumber:
    @pytest.mark.parametrize(
        "value", ["9434765919", "943 476 5919", " 943 476 5919 ", "9 4 3 4 7 6 5 9 1 9"]
    )
    def test_spaces_are_removed(self, value: str) -> None:
        assert normalise_nhs_number(value) == "9434765919"

    def test_a_valid_number_is_returned_unchanged(self) -> None:
        n = synthetic_nhs_number(random.Random(5))
        assert normalise_nhs_number(n) == n

    @pytest.mark.parametrize(
        "value", ["9434765918", "943476591", "943476591A", "", "0000000060", "94347659190"]
    )
    def test_an_invalid_number_raises_validation_failed(self, value: str) -> None:
        with pytest.raises(ValidationFailed) as exc:
            normalise_nhs_number(value)
        assert exc.value.status == 422
        assert "nhs_number" in exc.value.message and "Modulus 11" in exc.value.message

    def test_the_error_does_not_echo_the_number(self) -> None:
        with pytest.raises(ValidationFailed) as exc:
            normalise_nhs_number("9434765918")
        assert "9434765918" not in str(exc.value)

    @pytest.mark.parametrize(
        "value", ["9434765919\n", "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669"]
    )
    def test_the_result_is_always_ten_ascii_digits_or_an_error(self, value: str) -> None:
        try:
            out = normalise_nhs_number(value)
        except ValidationFailed:
            return
        assert out == "9434765919"


def _check(**overrides: object) -> None:
    kw: dict[str, object] = dict(
        consent_to_referral=True,
        from_org="GP-1",
        to_org="PAIN-1",
        source=Source.GP,
        referred_from=None,
    )
    kw.update(overrides)
    check_new_referral(**kw)  # type: ignore[arg-type]


class TestCheckNewReferral:
    @pytest.mark.parametrize("source", [s for s in Source if s is not Source.ONWARD])
    def test_a_consented_referral_from_any_first_contact_source_passes(
        self, source: Source
    ) -> None:
        assert _check(source=source) is None

    def test_a_consented_onward_referral_naming_its_origin_passes(self) -> None:
        assert _check(source=Source.ONWARD, referred_from="ref-1") is None

    @pytest.mark.parametrize("source", list(Source))
    def test_without_consent_it_fails_whatever_the_source(self, source: Source) -> None:
        with pytest.raises(ValidationFailed) as exc:
            _check(consent_to_referral=False, source=source, referred_from="ref-1")
        assert exc.value.status == 422
        assert "consent_to_referral" in exc.value.message

    @pytest.mark.parametrize("referred_from", [None, ""])
    def test_an_onward_referral_without_referred_from_fails(
        self, referred_from: str | None
    ) -> None:
        with pytest.raises(ValidationFailed) as exc:
            _check(source=Source.ONWARD, referred_from=referred_from)
        assert exc.value.status == 422
        assert "referred_from" in exc.value.message

    def test_a_non_onward_referral_may_still_name_where_it_came_from(self) -> None:
        assert _check(source=Source.GP, referred_from="ref-1") is None

    def test_consent_is_checked_before_the_onward_rule(self) -> None:
        with pytest.raises(ValidationFailed) as exc:
            _check(consent_to_referral=False, source=Source.ONWARD, referred_from=None)
        assert "consent" in exc.value.message
