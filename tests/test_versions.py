"""Naming and ordering of versions: the wire format of docs/architecture.md, wire protocol, without any server."""

from __future__ import annotations

import pytest

from diachronic.contracts import VersionInfo
from diachronic.errors import InvalidInput
from diachronic.flags import VersionFlag
from diachronic.versions import (
    flag_name,
    flag_name_prefix,
    format_seq_id,
    next_seq_id,
    parse_flag_name,
    previous_version,
    seq_of,
    sort_newest_first,
    task_queue,
    version_info,
)


def vflag(seq: int, version: str, *, wf: str = "wf", archived: bool = False) -> VersionFlag:
    return VersionFlag(info=version_info(wf, seq, version), enabled=True, archived=archived)


@pytest.mark.parametrize(
    ("workflow_name", "version_id", "expected"),
    [
        pytest.param("wfname", "vid", "wfname-vid", id="plain names join with a dash"),
        pytest.param("my-workflow", "abc123", "my-workflow-abc123", id="a dash in the workflow name is kept"),
        pytest.param("my_wf", "feature-x_2", "my_wf-feature-x_2", id="dashes and underscores in the version"),
        pytest.param("workflowCI", "workflow-ci", "workflowCI-workflow-ci", id="the original CI worker's queue"),
    ],
)
def test_task_queue(workflow_name: str, version_id: str, expected: str) -> None:
    assert task_queue(workflow_name, version_id) == expected


@pytest.mark.parametrize(
    ("seq_id", "expected"),
    [
        pytest.param(0, "000", id="the first version is 000"),
        pytest.param(1, "001", id="small numbers are zero padded"),
        pytest.param(42, "042", id="two digits are padded to three"),
        pytest.param(999, "999", id="999 needs no padding"),
        pytest.param(1000, "1000", id="1000 grows to four digits"),
        pytest.param(12345, "12345", id="larger numbers are written in full"),
    ],
)
def test_format_seq_id(seq_id: int, expected: str) -> None:
    assert format_seq_id(seq_id) == expected


@pytest.mark.parametrize(
    ("workflow_name", "seq_id", "version_id", "expected"),
    [
        pytest.param("wfname", 2, "vid", "workflow.wfname.seqId.002.version.vid", id="the original's example"),
        pytest.param("wf", 0, "abc", "workflow.wf.seqId.000.version.abc", id="first flag is seq 000"),
        pytest.param("wf", 1000, "abc", "workflow.wf.seqId.1000.version.abc", id="seq past 999 has four digits"),
        pytest.param(
            "order-service", 7, "feat_x-1", "workflow.order-service.seqId.007.version.feat_x-1", id="dash underscore"
        ),
    ],
)
def test_flag_name_round_trips(workflow_name: str, seq_id: int, version_id: str, expected: str) -> None:
    name = flag_name(workflow_name, seq_id, version_id)
    assert name == expected
    assert parse_flag_name(name) == (workflow_name, seq_id, version_id)


@pytest.mark.parametrize(
    ("workflow_name", "version_id"),
    [
        pytest.param("wf.x", "v1", id="a dot in the workflow name is rejected"),
        pytest.param("wf", "v1.2", id="a dot in the version id is rejected"),
        pytest.param("", "v1", id="an empty workflow name is rejected"),
        pytest.param("wf", "", id="an empty version id is rejected"),
        pytest.param("wf", "-v1", id="a version id starting with a dash is rejected"),
        pytest.param("wf x", "v1", id="spaces are rejected"),
        pytest.param("wf", "v/1", id="slashes are rejected"),
        pytest.param("w" * 101, "v1", id="names longer than 100 characters are rejected"),
        pytest.param("wf", "v1\n", id="a trailing newline is rejected"),
    ],
)
def test_bad_names_are_rejected_up_front(workflow_name: str, version_id: str) -> None:
    with pytest.raises(InvalidInput):
        flag_name(workflow_name, 0, version_id)
    with pytest.raises(InvalidInput):
        task_queue(workflow_name, version_id)
    with pytest.raises(InvalidInput):
        version_info(workflow_name, 0, version_id)


@pytest.mark.parametrize(
    "seq_id",
    [pytest.param(-1, id="negative"), pytest.param(True, id="a bool is not a number"), pytest.param(1.0, id="float")],
)
def test_bad_sequence_ids_are_rejected(seq_id: int) -> None:
    with pytest.raises(InvalidInput):
        flag_name("wf", seq_id, "v1")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("workflow.wf.seqId.001.version", id="missing the version id"),
        pytest.param("workflow.wf.seqId.001.version.v1.extra", id="a seventh part"),
        pytest.param("workflow.wf.seqId.001.version.v1.2", id="a dotted version id"),
        pytest.param("flag.wf.seqId.001.version.v1", id="wrong first word"),
        pytest.param("workflow.wf.seq.001.version.v1", id="wrong seqId word"),
        pytest.param("workflow.wf.seqId.001.ver.v1", id="wrong version word"),
        pytest.param("Workflow.wf.seqId.001.version.v1", id="words are case sensitive"),
        pytest.param("workflow.wf.seqId.abc.version.v1", id="non-numeric seq"),
        pytest.param("workflow.wf.seqId.-01.version.v1", id="negative seq"),
        pytest.param("workflow.wf.seqId.1.version.v1", id="seq not padded to three digits"),
        pytest.param("workflow.wf.seqId.0001.version.v1", id="seq padded too much"),
        pytest.param("workflow.wf.seqId..version.v1", id="empty seq"),
        pytest.param("workflow.wf.seqId.00\u0661.version.v1", id="non-ascii digits"),
        pytest.param("workflow..seqId.001.version.v1", id="empty workflow name"),
        pytest.param("workflow.wf.seqId.001.version.", id="empty version id"),
        pytest.param("workflow.w f.seqId.001.version.v1", id="workflow name failing check_name"),
        pytest.param("workflow.wf.seqId.001.version.v 1", id="version id failing check_name"),
        pytest.param("workflow.wf.seqId.001.version.v1\n", id="a trailing newline"),
        pytest.param("workflow.wf.seqId.001\n.version.v1", id="a newline after the seq"),
    ],
)
def test_parse_flag_name_rejects_malformed_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        parse_flag_name(name)


def test_prefix_matches_only_this_workflow() -> None:
    prefix = flag_name_prefix("wf")
    assert flag_name("wf", 3, "v").startswith(prefix)
    assert not flag_name("wf-2", 3, "v").startswith(prefix)
    assert not flag_name("wf2", 3, "v").startswith(prefix)


def test_version_info_derives_every_name() -> None:
    assert version_info("wfname", 2, "vid", "development") == VersionInfo(
        workflow_name="wfname",
        version_id="vid",
        seq_id=2,
        flag_name="workflow.wfname.seqId.002.version.vid",
        task_queue="wfname-vid",
        environment="development",
    )


@pytest.mark.parametrize(
    ("seqs", "expected"),
    [
        pytest.param([], [], id="nothing to sort"),
        pytest.param([0, 2, 1], [2, 1, 0], id="highest sequence id first"),
        pytest.param([999, 1000, 998, 1001], [1001, 1000, 999, 998], id="1000 comes after 999, as numbers"),
        pytest.param([9, 10, 100, 99], [100, 99, 10, 9], id="no lexical ordering of names"),
    ],
)
def test_sort_newest_first(seqs: list[int], expected: list[int]) -> None:
    flags = [vflag(s, f"v{s}") for s in seqs]
    assert [seq_of(f) for f in sort_newest_first(flags)] == expected
    assert [i.seq_id for i in sort_newest_first([f.info for f in flags])] == expected
    assert [seq_of(n) for n in sort_newest_first([f.info.flag_name for f in flags])] == expected


@pytest.mark.parametrize(
    ("seqs", "expected"),
    [
        pytest.param([], 0, id="the first version gets seq 0"),
        pytest.param([0], 1, id="the next after 0 is 1"),
        pytest.param([0, 5, 3], 6, id="one more than the highest, gaps are not filled"),
        pytest.param([998, 999], 1000, id="after 999 comes 1000"),
    ],
)
def test_next_seq_id(seqs: list[int], expected: int) -> None:
    assert next_seq_id([vflag(s, "v") for s in seqs]) == expected
    assert next_seq_id([flag_name("wf", s, "v") for s in seqs]) == expected


P = tuple[int, str, bool]  # (seq, version, archived)


@pytest.mark.parametrize(
    ("flags", "deploying", "expected_seq"),
    [
        pytest.param([], "v1", None, id="no flag means an initial deployment"),
        pytest.param([(0, "v1", False)], "v2", 0, id="the newest flag of another version is previous"),
        pytest.param([(0, "v1", False)], "v1", None, id="redeploying the only version has no previous"),
        pytest.param([(1, "def", False), (0, "abc", False)], "vid", 1, id="the original's test: def at 001"),
        pytest.param([(1, "v2", False), (0, "v1", False)], "v2", 0, id="redeploying the newest skips it"),
        pytest.param([(2, "v1", False), (1, "v2", False), (0, "v1", False)], "v1", 1, id="rolled back v1 skips v1s"),
        pytest.param([(1, "v2", True), (0, "v1", False)], "v3", 0, id="archived flags are never previous"),
        pytest.param([(1, "v2", True), (0, "v1", True)], "v3", None, id="all archived is an initial deployment"),
        pytest.param([(999, "a", False), (1000, "b", False)], "c", 1000, id="seq compared as numbers"),
        pytest.param([(1, "v1-x", False), (0, "v1", False)], "v1", 1, id="versions match exactly, not by suffix"),
        pytest.param([(1, "x-v1", False), (0, "v1", False)], "v1", 1, id="nor by prefix"),
    ],
)
def test_previous_version(flags: list[P], deploying: str, expected_seq: int | None) -> None:
    given = [vflag(seq, version, archived=archived) for seq, version, archived in flags]
    found = previous_version(given, deploying)
    assert (found.seq_id if found else None) == expected_seq
    if found is not None:
        assert found == next(f.info for f in given if f.info.seq_id == expected_seq)


def test_previous_version_accepts_plain_version_infos() -> None:
    infos = [version_info("wf", 0, "v1"), version_info("wf", 1, "v2")]
    assert previous_version(infos, "v3") == infos[1]
