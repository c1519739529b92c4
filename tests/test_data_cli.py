"""``srdc-data list`` and ``verify``: the registry as printed, and the messages for missing or broken copies."""

import pytest
from data_helpers import make_office_like, tiny_benchmark

from srdc.data.benchmarks import BENCHMARKS
from srdc.data.cli import main


def test_list_prints_domains_counts_md5_and_urls(tmp_path, capsys):
    assert main(["list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "office31: Office-31 (Saenko et al., ECCV 2010), 31 classes" in out
    assert "archive domain_adaptation_images.tar.gz  md5 1b536d114869a5a8aa4580b89e9758fb" in out
    assert "archive image_CLEF.zip  md5 unverified" in out
    assert "   A amazon            2817 images  not downloaded" in out
    assert "  Rw Real_World        4357 images  not downloaded" in out
    assert "   B b            count unverified  not downloaded" in out
    assert out.count("  url https://") == 2 + 3 + 4


def test_verify_of_a_missing_benchmark_names_path_and_command(tmp_path, capsys):
    assert main(["verify", "office31", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'office31'} does not verify as Office-31")
    assert err.count(f"srdc-data download office31 --root {tmp_path}") == 3  # one per domain


def test_verify_reports_every_broken_domain(tmp_path, monkeypatch, capsys):
    bench = tiny_benchmark(counts={"amazon": 6, "webcam": 9})
    monkeypatch.setitem(BENCHMARKS, bench.name, bench)
    make_office_like(tmp_path / bench.name)
    assert main(["verify", bench.name, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds 7 images, Tiny benchmark domain 'amazon' has 6" in err
    assert "holds 7 images, Tiny benchmark domain 'webcam' has 9" in err


def test_an_unknown_benchmark_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["download", "office32", "--root", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'office32'" in capsys.readouterr().err
