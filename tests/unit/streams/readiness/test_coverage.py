"""Province coverage: names, abbreviations and aliases resolve to one province; "National" covers all."""

from __future__ import annotations

import pytest

from streams.readiness.coverage import (
    ALL_PROVINCES,
    NATIONAL,
    UnknownProvinceError,
    check_coverage,
    company_provinces,
    resolve_province,
    tender_scope,
)


@pytest.mark.parametrize(
    ("name", "province"),
    [
        ("Gauteng", "Gauteng"),
        ("GP", "Gauteng"),
        ("gp", "Gauteng"),
        ("Gauteng Province", "Gauteng"),
        ("The Province of Gauteng", "Gauteng"),
        ("ZA-GT", "Gauteng"),
        ("KZN", "KwaZulu-Natal"),
        ("KwaZulu-Natal", "KwaZulu-Natal"),
        ("Kwazulu-Natal", "KwaZulu-Natal"),
        ("Kwazulu Natal", "KwaZulu-Natal"),
        ("KWAZULU NATAL", "KwaZulu-Natal"),
        ("KwaZuluNatal", "KwaZulu-Natal"),
        ("ZA-NL", "KwaZulu-Natal"),
        ("Northern Province", "Limpopo"),
        ("LP", "Limpopo"),
        ("North-West", "North West"),
        ("Northwest", "North West"),
        ("NW", "North West"),
        ("OFS", "Free State"),
        ("western cape province", "Western Cape"),
        ("  Eastern Cape  ", "Eastern Cape"),
        ("National", NATIONAL),
        ("national", NATIONAL),
    ],
)
def test_names_abbreviations_and_aliases_resolve(name: str, province: str) -> None:
    assert resolve_province(name) == province


@pytest.mark.parametrize("name", ["Northern", "Lesotho", "Cape", "", "Western"])
def test_names_that_are_no_province_do_not_resolve(name: str) -> None:
    assert resolve_province(name) is None


def test_national_tender_covers_every_province() -> None:
    scope = tender_scope("National")
    assert scope.national
    assert scope.provinces == ALL_PROVINCES
    result = check_coverage(scope, company_provinces(["Limpopo"]))
    assert result.passed is True
    assert result.reason == "National tender, open to bidders from all provinces; you cover Limpopo"


def test_national_tender_passes_even_for_a_company_without_provinces() -> None:
    assert check_coverage(tender_scope("National"), ()).passed is True


def test_covered_province_passes_and_names_the_provinces() -> None:
    result = check_coverage(tender_scope("Gauteng"), company_provinces(["GP", "Western Cape"]))
    assert result.passed is True
    assert result.reason == "Tender is in Gauteng; you cover Gauteng and Western Cape"


def test_tender_province_written_as_an_alias_is_matched() -> None:
    result = check_coverage(tender_scope("Kwazulu Natal"), company_provinces(["KZN"]))
    assert result.passed is True


def test_uncovered_province_fails_and_blocks() -> None:
    result = check_coverage(tender_scope("Limpopo"), company_provinces(["Gauteng", "North West"]))
    assert (result.passed, result.blocking) == (False, True)
    assert result.reason == "Tender is in Limpopo; you cover only Gauteng and North West"


def test_company_without_provinces_fails_without_blocking() -> None:
    result = check_coverage(tender_scope("Limpopo"), ())
    assert (result.passed, result.blocking) == (False, False)
    assert result.reason == "Tender is in Limpopo; your profile lists no provinces"


def test_multi_province_tender_needs_one_of_them() -> None:
    scope = tender_scope("Free State / North West")
    assert scope.provinces == ("Free State", "North West")
    assert check_coverage(scope, company_provinces(["NW"])).passed is True
    assert check_coverage(scope, company_provinces(["GP"])).passed is False


def test_missing_tender_province_cannot_be_checked() -> None:
    for raw in (None, "", "   "):
        result = check_coverage(tender_scope(raw), company_provinces(["GP"]))
        assert result.passed is None
        assert result.reason == "The tender states no province, so coverage was not checked"


def test_unknown_tender_province_is_explained() -> None:
    result = check_coverage(tender_scope("Maseru"), company_provinces(["GP"]))
    assert result.passed is None
    assert result.reason == "The tender's province 'Maseru' is not one we know, so coverage was not checked"


def test_company_national_expands_to_all_provinces() -> None:
    covered = company_provinces(["National"])
    assert covered == ALL_PROVINCES
    result = check_coverage(tender_scope("Northern Cape"), covered)
    assert result.reason == "Tender is in Northern Cape; you cover all provinces"


def test_company_provinces_are_deduplicated_in_reference_order() -> None:
    assert company_provinces(["WC", "gauteng", "GP", "Western Cape"]) == ("Gauteng", "Western Cape")


def test_unknown_company_province_is_an_error_that_lists_valid_names() -> None:
    with pytest.raises(UnknownProvinceError, match=r"unknown province 'Lesotho'; use one of Eastern Cape, .*KZN"):
        company_provinces(["GP", "Lesotho"])
    assert issubclass(UnknownProvinceError, ValueError)
