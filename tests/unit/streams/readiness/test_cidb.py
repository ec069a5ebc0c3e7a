"""CIDB grading: parsing real eTenders requirement text, and checking company gradings against it."""

from __future__ import annotations

import pytest

from streams.readiness.cidb import CidbGrading, CidbRequirement, check_cidb, parse_cidb_requirements

R = CidbRequirement
NONE: tuple[CidbRequirement, ...] = ()

# Every text below is copied verbatim from a real release (tender.description or tender.specialConditions) in
# za_etenders_advertised.ocds.jsonl or data/za_etenders_portal_200.ocds.jsonl; the expected alternatives are written
# by hand from reading the text.
REAL_REQUIREMENTS: list[tuple[str, tuple[CidbRequirement, ...]]] = [
    (
        "Only tenderers who are a CIDB contractor grading of 9CE or higher as stated on the Tender Data may submit "
        "tender offers.\n\nTenders from tenderers registered as potentially emerging enterprises with a CIDB "
        "contractor grading designation lower than a contractor grading designation required for this tender, will "
        "not be accepted.",
        (R(9, "CE"),),  # the PE sentence here excludes PE tenderers: no PE admission
    ),
    (
        "A valid Construction Industry Development Board (CIDB) contractor grading designation of 8EP (Electrical "
        "Engineering works) or higher is required.",
        (R(8, "EP"),),
    ),
    ("APPOINTMENT OF A 1SF OR HIGHER CIDB GRADE SERVICE PROVIDER TO \nSERVICE ALL FIRE EQUIPMENT", (R(1, "SF"),)),
    ("CIDB grading: 8EP/ME or higher", (R(8, "EP"), R(8, "ME"))),
    ("A minimum CIDB grading of 3CE or Higher is required", (R(3, "CE"),)),
    ("CIDB Grade 5 CE or Higher", (R(5, "CE"),)),
    (
        "posted on eTenders/Municipal website by 2026-03-12\n-7CE or higher\n-Rowan Nhlumayo\nTel: (031) 311 8154",
        (R(7, "CE"),),
    ),
    ("by.2026-03-03\n- 5CE or higher\n-Thea Govender\n(t) [phone removed]", (R(5, "CE"),)),  # not the range "03 - 5"
    ("by 2025-09-04 -7ME or higher -Rylan Papanicolaou", (R(7, "ME"),)),  # not the range "04 -7"
    ("Fisaphile Buthelezi\n(t) 031¬311-8493\n-8CE or higher", (R(8, "CE"),)),
    ("- 4SK or higher\n-Technical: \nAdrian Naidoo", (R(4, "SK"),)),
    ("GRADE 7-9 EP", (R(7, "EP"),)),
    ("CIBD GRADING 7-9EP", (R(7, "EP"),)),
    ("CIBD GRADE 4-6EP", (R(4, "EP"),)),
    ("CIBD GRADE 1-3 CE OR HIGHER", (R(1, "CE"),)),
    ("AS AND WHEN REQUIRED GRADING , CIDB 6EP", (R(6, "EP"),)),
    ("CIDB grading required is 6 ME or higher.", (R(6, "ME"),)),
    (
        "PRICE:R3000.00\n(NON-REFUNDABLE)\n\nPLEASE TAKE NOTE THAT THE CIDB GRADE FOUR (4) OR HIGHER IS APPLICABLE "
        "FOR BID/12/2025-26",
        (R(4, None),),
    ),
    ("Panel of 4  Service Providers grade 4 CE and higher for construction", (R(4, "CE"),)),
    ("Anticipated 2CEPE / 2GBPE or Higher", (R(2, "CE", True), R(2, "GB", True))),
    ("4EP AND ABOVE", (R(4, "EP"),)),
    ("CIDB GRADING 01GB OR HIGHER", (R(1, "GB"),)),
    ("NB:1SO grading CIDB certificate must be attached", (R(1, "SO"),)),
    ("suitable CIDB Grade 2 ME (or higher) service provider", (R(2, "ME"),)),
    ("CIDB 6EB or 6EP or HIGHER", (R(6, "EB"), R(6, "EP"))),
    ("The company must have valid CIDB grading of 1EB/EP or higher.", (R(1, "EB"), R(1, "EP"))),
    (
        "a)\tOnly those tenderers who are registered with the CIDB for a 5CE or higher class of construction work, "
        "are eligible to submit tenders.\nb)\tContractors registered as potentially emerging enterprises with the "
        "CIDB who are registered in one contractor grading designation lower than the required in terms of (a) above "
        "who satisfy criteria stipulated in the Tender Data may submit tenders. (4CEPE)",
        (R(5, "CE", True),),
    ),
    ("8/2/2/451RE 6CE5CEPE (2025-2028) BID TO APPOINT", (R(6, "CE", True),)),
    ("8/2/2/451 (2025-2028)(6CE/5CEPE or higher) BID TO APPOINT", (R(6, "CE", True),)),
    ("PHASE 2 (CIDB Grading 3 SQ or HIGHER)", (R(3, "SQ"),)),
    ("Provide proof of CIDB Grading 4SI or 4ME or higher.", (R(4, "SI"), R(4, "ME"))),
    ("It is estimated that contractors should have a CIDB grading of 1SG/GB or higher.", (R(1, "SG"), R(1, "GB"))),
    ("Construction Industry Development Board (CIDB) contractor grading of Grade 8 GB.", (R(8, "GB"),)),
    ("MINIMUM CIDB GRADING 7 CE", (R(7, "CE"),)),
    ("CONTRACTORS WITH A MINIMUM CIDB OF 2SO OR HIGHER", (R(2, "SO"),)),
    ("NTABENI CLINIC: REPAIRS TO ROOF DAMAGED BY STORM. 2 GB", (R(2, "GB"),)),
    ("DEPARTMENT OF TRANSPORT: HYSLOP ROAD: REPLACE THE BLOCKED SEWER LINE: 2SO", (R(2, "SO"),)),
    ("DURBAN REGION CIDB GRADE 4 or higher", (R(4, None),)),
    ("3 YEARS ELECTRICAL MAINTENANCE CONTRACT : 1 EB or higher", (R(1, "EB"),)),
    ("CIDB 7 CE EP ME OR HIGHER", (R(7, "CE"), R(7, "EP"), R(7, "ME"))),
    ("CIDB Grading: 7 CE ME", (R(7, "CE"), R(7, "ME"))),
    ("Estimated CIDB Grading of: 3 CE, 4 CE, 5 CE or higher", (R(3, "CE"),)),  # 4CE and 5CE add nothing to 3CE
    ("CIDB Level 3CE of higher", (R(3, "CE"),)),
    ("1. Compulsory Briefing 2. Tender Amount R1500.00 3 CIDB Grading: 7GB", (R(7, "GB"),)),
    ("CIDB LEVEL GRADING: 1CE or higher or 1 GB or higher", (R(1, "CE"), R(1, "GB"))),
    (
        "Procurement of the Panel of Engineering Contractors (2CE) for the Installation of Pour Flush Toilets",
        (R(2, "CE"),),
    ),
    ("PRASA GAUTENG REGION. (CIBD GRADING \u2013 4EP)", (R(4, "EP"),)),  # an en dash in the data
    (
        "It is estimated that tenderers must have a CIDB contractor grading designation of 9CE or 9GB or higher.",
        (R(9, "CE"), R(9, "GB")),
    ),
    ("CIDB Grading Required : 6 EB or Higher .", (R(6, "EB"),)),
    ("(CIDB Grade: GB 0r Higher)", (R(1, "GB"),)),  # no grade stated: any GB registration
    ("Appointment of a Panel of Main Contractors with CIDB Grades 8 and 9", (R(8, None),)),
    ("(CIDB GRADE 2CE TO 8CE", (R(2, "CE"),)),
    ("CONTRACTOR DEVELOPMENT FOR 2GB TO 4GB FOR A PERIOD OF THREE YEARS", (R(2, "GB"),)),
    ("6EP PE OR EB PE OR 6ME PE OR HIGHER", (R(6, "EP", True), R(6, "EB", True), R(6, "ME", True))),
    ("For CIDB Grading 5-7 EP/EB", (R(5, "EP"), R(5, "EB"))),
    ("(CIDB Grade 5-7 (EP/EB))", (R(5, "EP"), R(5, "EB"))),
    ("ONLY RESPONDENTS WITH CIDB GRADING 7CE OR 7SJ OR HIGHER ARE ELIGIBLE TO BID", (R(7, "CE"), R(7, "SJ"))),
    ("CIDB Grading Requirement:Minimum7CE or higher.", (R(7, "CE"),)),
    ("CIDB GRADING ME LEVEL 4 OR HIGHER", (R(4, "ME"),)),
    ("The CIDB grading 1 or higher is required for this bid", (R(1, None),)),
    ("designation of 6SQ or 6CE or higher class of construction work", (R(6, "SQ"), R(6, "CE"))),
    ("1. Compulsory briefing session 2. CIDB Grading : 6CE 3. Tender amount: 1000", (R(6, "CE"),)),
    ("5CE OR hIGHER", (R(5, "CE"),)),
    (
        "ON CIDB GRADING 1 & 2 TO RENDER INFRASTRUCTURE MAINTENANCE IN TERMS OF GB, SO, EB, ME, CE, SH, SQ",
        (R(1, None),),
    ),
    ("7CE CIDB GRADING", (R(7, "CE"),)),
    ("Supplier must meet the CIDB Grading of 6SL or Higher.", (R(6, "SL"),)),
    ("CIDB grading: 9EP", (R(9, "EP"),)),
    ("for a CIDB Grade 5EP or  Higher class of construction work", (R(5, "EP"),)),
    ("(GRADE 3CE OR HIGHER)", (R(3, "CE"),)),
    (
        "calorifiers at Tshepong Hospital for a period of seven (07) months.CIDB Grading 6ME or Higher",
        (R(6, "ME"),),
    ),
]

# Real texts that state no CIDB requirement, several with numbers, grades or letter pairs that could pass for one.
REAL_NON_REQUIREMENTS = [
    "No CIDB grading\nOwnership by Black People (20 points)",
    "Ownership by black people 20 points.\nNo CIDB grading.",
    "CIDB GRADING (if applicable) N/A 1ST STAGE OF BID EVALUATION",
    "ALL BIDDERS, including ALL THE PARTNERS OF A JOINT VENTURE MUST BE CIDB REGISTERED AND ATTEND THIS COMPULSORY "
    "SITE AND INFORMATION MEETING.",
    "in a contractor grading designation equal to or higher than a contractor grading designation determined in "
    "accordance with the sum tendered or a value determined in accordance with Regulation 25 (1B) or 25(7A) of the "
    "Construction Industry Development Regulations",
    "THE SUPPLY OF MEDICAL LOCUMS OF ALL GRADES AND SPECIALITIES INCLUDING STANDBY, ON CALL",
    "Hiring of Construction Grader and TLB to work around Far North SAFCOL Plantations. (Re-advert)",
    "in a Cohort of 500 Schools From Grades 3-7, with Digitally Administered Online Mathematics Exercises",
    "THE CONSTRUCTION OF 3 CELL 2,4 M X 2,4 M BOX",
    "SUPPLY AND DELIVERY OF 4 SKIPPER BINS",
    "FIVE YEAR CONTRACT FOR 24/7 SECURITY SERVICES",
    "SUPPLY AND DELIVER 7FT GRADER BLADES - COST CENTRE PMB STORES",
    "GQEBERHA (PE) AREA: SERVICING, MAINTENANCE AND REPAIRS OF GAS REFRIGERATION EQUIPMENT FOR 36 MONTHS.",
    "TD 04/02/2026 UPGRADING OF EXISTING TOILET FACILITIES ON THE THIRD FLOOR",
    "NQF LEVEL 02 SP- 210401",
    "Provision of Job Grading Exercise",
    "OINTMENT AT RISK FOR PANEL OF 3 SERVICE PROVIDERS",
    "LLATION  & CONFIGURATION OF   8 SERVERS.",
    "REET LIGHT MAINTENANCE\nSTREAM 3 METERING MAINTENANCE",
    "The design, manufacture, testing, supply, delivery and offloading of capacitance-graded Transformer HVDC "
    "Bushings (Once-off).",
    "LTO 6 TO LTO 9",
]


def test_the_real_table_has_forty_different_requirement_strings() -> None:
    texts = [text for text, _ in REAL_REQUIREMENTS]
    assert len(set(texts)) == len(texts) >= 40


@pytest.mark.parametrize(("text", "expected"), REAL_REQUIREMENTS, ids=[t[:40] for t, _ in REAL_REQUIREMENTS])
def test_parses_real_requirement_text(text: str, expected: tuple[CidbRequirement, ...]) -> None:
    assert parse_cidb_requirements(text) == expected


@pytest.mark.parametrize("text", REAL_NON_REQUIREMENTS, ids=[t[:40] for t in REAL_NON_REQUIREMENTS])
def test_real_text_without_a_requirement_parses_to_nothing(text: str) -> None:
    assert parse_cidb_requirements(text) == NONE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6CE PE", (R(6, "CE", True),)),
        ("6CE or higher PE", (R(6, "CE", True),)),
        ("5CE (PE)", (R(5, "CE", True),)),
        ("CIDB 7GB/CE", (R(7, "GB"), R(7, "CE"))),
        ("GRADE 5CE OR HIGHER", (R(5, "CE"),)),
        ("1 EB", (R(1, "EB"),)),
        ("C.I.D.B. grade 4 or higher", (R(4, None),)),
    ],
)
def test_parses_the_requirement_forms_of_the_brief(text: str, expected: tuple[CidbRequirement, ...]) -> None:
    assert parse_cidb_requirements(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Learners in Grade 12 at 3 schools",
        "Laptops with 8 GB RAM and 512 GB SSD",
        "16 GB memory",
        "Call 012 345 6789 before 2026-03-12",
        "Tender GQET-25/26-040 closes 2026-03-17 at 11:00",
        "Bid fee R3000.00 5 GB",
        "CIDB GRADE 10CE",
        "supply of 2 ME",
    ],
)
def test_numbers_dates_money_and_memory_sizes_are_not_gradings(text: str) -> None:
    assert parse_cidb_requirements(text) == NONE


def test_requirements_are_collected_from_every_text_field() -> None:
    found = parse_cidb_requirements("Road rehabilitation", None, "", "CIDB grading: 7CE or higher")
    assert found == (R(7, "CE"),)


def test_pe_designation_in_one_field_folds_into_the_grade_in_another() -> None:
    assert parse_cidb_requirements("CIDB 6CE or higher", "(5CEPE)") == (R(6, "CE", True),)


def test_the_pe_clause_in_special_conditions_admits_pe_for_the_grade_in_the_title() -> None:
    clause = (
        "Contractors registered as potentially emerging enterprises with the CIDB who are registered in one "
        "contractor grading designation lower than the required may submit tenders."
    )
    assert parse_cidb_requirements("ROAD MAINTENANCE (GRADE 6CE OR HIGHER)", clause) == (R(6, "CE", True),)


# --- check_cidb ------------------------------------------------------------------------------------------------------


def G(label: str, pe: bool = False) -> CidbGrading:
    return CidbGrading(label[1:], int(label[0]), pe)


def test_no_requirement_passes_as_not_required() -> None:
    result = check_cidb((), [])
    assert result.passed is True
    assert "not required" in result.reason
    assert not result.blocking


@pytest.mark.parametrize("required", range(1, 10))
@pytest.mark.parametrize("held", range(1, 10))
def test_grades_compare_as_numbers(required: int, held: int) -> None:
    assert check_cidb((R(required, "CE"),), [G(f"{held}CE")]).passed is (held >= required)


def test_grade_nine_meets_a_grade_two_requirement_and_grade_one_does_not_meet_grade_nine() -> None:
    # The seed compared strings; as numbers, 9 > 2 and 1 < 9 regardless of how many digits a grade has.
    assert check_cidb(parse_cidb_requirements("2CE or higher"), [G("9CE")]).passed is True
    assert check_cidb(parse_cidb_requirements("9CE or higher"), [G("1CE")]).passed is False


def test_pe_requirement_admits_one_grade_lower_registered_as_potentially_emerging() -> None:
    result = check_cidb(parse_cidb_requirements("6CE or higher PE"), [G("5CE", pe=True)])
    assert result.passed is True
    assert result.reason == (
        "Requires CIDB 6CE or higher (PE admitted); you hold 5CE registered as potentially emerging"
    )


def test_pe_requirement_admits_the_grade_itself_without_pe() -> None:
    assert check_cidb(parse_cidb_requirements("6CE PE"), [G("6CE")]).passed is True
    assert check_cidb(parse_cidb_requirements("6CE PE"), [G("8CE")]).passed is True


def test_pe_requirement_rejects_one_grade_lower_without_pe_registration() -> None:
    result = check_cidb(parse_cidb_requirements("6CE PE"), [G("5CE")])
    assert result.passed is False
    assert result.blocking
    assert result.reason == (
        "Requires CIDB 6CE or higher (PE admitted); you hold 5CE (a PE registration would admit 5CE)"
    )


def test_pe_requirement_rejects_two_grades_lower_even_with_pe() -> None:
    assert check_cidb(parse_cidb_requirements("6CE PE"), [G("4CE", pe=True)]).passed is False


def test_requirement_without_pe_rejects_one_grade_lower_with_pe() -> None:
    assert check_cidb(parse_cidb_requirements("6CE or higher"), [G("5CE", pe=True)]).passed is False


def test_any_one_alternative_is_enough() -> None:
    alternatives = parse_cidb_requirements("CIDB grading: 8EP/ME or higher")
    assert check_cidb(alternatives, [G("3EP"), G("8ME")]).passed is True


def test_failure_names_what_is_held_and_what_is_missing() -> None:
    result = check_cidb(parse_cidb_requirements("8EP/ME or higher"), [G("7EP"), G("9GB")])
    assert result.passed is False
    assert result.reason == "Requires CIDB 8EP or 8ME or higher; you hold 7EP and no ME grading"


def test_a_grade_in_another_class_does_not_count() -> None:
    result = check_cidb(parse_cidb_requirements("5CE or higher"), [G("9GB")])
    assert result.passed is False
    assert result.reason == "Requires CIDB 5CE or higher; you hold no CE grading"


def test_no_gradings_at_all_fails_and_blocks() -> None:
    result = check_cidb(parse_cidb_requirements("3GB or higher"), [])
    assert (result.passed, result.blocking) == (False, True)
    assert result.reason == "Requires CIDB 3GB or higher; you hold no CIDB grading"


def test_grade_without_class_is_met_by_that_grade_in_any_class() -> None:
    alternatives = parse_cidb_requirements("DURBAN REGION CIDB GRADE 4 or higher")
    passed = check_cidb(alternatives, [G("2CE"), G("5GB")])
    assert passed.passed is True
    assert passed.reason == "Requires CIDB grade 4 (any class) or higher; you hold 5GB"
    failed = check_cidb(alternatives, [G("2CE"), G("3GB")])
    assert failed.passed is False
    assert failed.reason == "Requires CIDB grade 4 (any class) or higher; you hold 2CE and 3GB"


@pytest.mark.parametrize(("grade", "cls"), [(0, "CE"), (10, "CE"), (5, "XX"), (5, "ce")])
def test_invalid_gradings_are_rejected(grade: int, cls: str) -> None:
    with pytest.raises(ValueError, match="CIDB"):
        CidbGrading(cls, grade)
