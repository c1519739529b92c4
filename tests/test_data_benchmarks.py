"""The registry of the paper's benchmarks, their task names, and layout checks on miniature copies."""

import pytest
from data_helpers import TINY_CLASSES, make_class_folders, make_jpeg, tiny_benchmark

from srdc.config import SRDCConfig
from srdc.data import DATASETS, load_task
from srdc.data.benchmarks import (
    BENCHMARKS,
    IMAGECLEF,
    OFFICE31,
    OFFICEHOME,
    Benchmark,
    BenchmarkDomain,
    verify_benchmark,
)
from srdc.errors import SRDCInputError


def test_registry_holds_the_papers_domains_letters_and_counts():
    def table(bench):
        return {d.letter: (d.name, d.count) for d in bench.domains}

    assert table(OFFICE31) == {"A": ("amazon", 2817), "D": ("dslr", 498), "W": ("webcam", 795)}
    assert table(IMAGECLEF) == {"C": ("c", 600), "I": ("i", 600), "P": ("p", 600), "B": ("b", None)}
    assert table(OFFICEHOME) == {"Ar": ("Art", 2427), "Cl": ("Clipart", 4365), "Pr": ("Product", 4439),
                                 "Rw": ("Real_World", 4357)}
    assert {name: len(b.classes) for name, b in BENCHMARKS.items()} == {"office31": 31, "imageclef": 12,
                                                                         "officehome": 65}


@pytest.mark.parametrize("bench", [OFFICE31, IMAGECLEF, OFFICEHOME], ids=lambda b: b.name)
def test_classes_are_in_the_canonical_sorted_order_and_unique(bench):
    assert list(bench.classes) == sorted(set(bench.classes))


def test_checksums_and_urls_are_registered():
    assert OFFICE31.md5 == "1b536d114869a5a8aa4580b89e9758fb"
    assert OFFICEHOME.md5 == "b1c14819770c4448fd5b6d931031c91c"
    assert IMAGECLEF.md5 is None  # no published checksum could be confirmed
    assert all(url.startswith("https://") for b in BENCHMARKS.values() for url in b.urls)
    assert len(OFFICEHOME.urls) == 4 and "1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC" in OFFICEHOME.urls[2]


@pytest.mark.parametrize("dataset, task, expected", [
    ("office31", "A->W", ("amazon", "webcam")),
    ("office31", "D→A", ("dslr", "amazon")),
    ("imageclef", "I->P", ("i", "p")),
    ("imageclef", "B->C", ("b", "c")),
    ("officehome", "Ar->Rw", ("Art", "Real_World")),
    ("officehome", "Cl->Pr", ("Clipart", "Product")),
])
def test_task_names_resolve_to_domains(dataset, task, expected):
    config = SRDCConfig(dataset=dataset, task=task)
    spec = DATASETS[dataset]
    assert (spec.resolve_domain(config.source), spec.resolve_domain(config.target)) == expected


def test_an_unknown_letter_lists_the_known_ones():
    with pytest.raises(SRDCInputError, match=r"unknown domain 'X' .*A \(= amazon\)"):
        DATASETS["office31"].resolve_domain("X")


def test_missing_benchmark_names_path_download_command_and_layout(tmp_path):
    config = SRDCConfig(dataset="office31", task="A->W", data_root=str(tmp_path))
    with pytest.raises(SRDCInputError) as error:
        load_task(config)
    message = str(error.value)
    assert f"not found under {tmp_path / 'office31'}" in message
    assert f"srdc-data download office31 --root {tmp_path}" in message
    assert f"{tmp_path}/office31/amazon/images or {tmp_path}/office31/amazon" in message
    assert "class folders CLASS/*.jpg (31 classes), 2817 images" in message


def test_a_miniature_copy_verifies_and_loads_with_letters(tiny, tmp_path):
    assert verify_benchmark(tiny, tmp_path / tiny.name) == {"amazon": 7, "webcam": 7}
    task = load_task(SRDCConfig(dataset=tiny.name, task="A->W", data_root=str(tmp_path), image_size=32))
    assert task.classes == list(TINY_CLASSES) and task.default_backbone == "resnet50"
    assert task.source.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert task.target.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert task.source.train_set[0][0].shape == (3, 32, 32)


def test_the_canonical_domain_class_layout_is_accepted_too(tmp_path):
    bench = tiny_benchmark()
    make_class_folders(tmp_path / bench.name / "amazon", TINY_CLASSES, (3, 2, 2))
    make_class_folders(tmp_path / bench.name / "webcam", TINY_CLASSES, (2, 3, 2))
    assert verify_benchmark(bench, tmp_path / bench.name) == {"amazon": 7, "webcam": 7}


def test_wrong_counts_and_classes_are_each_reported(tiny, tmp_path):
    (tmp_path / tiny.name / "amazon" / "images" / "TV" / "img 0.jpg").unlink()
    make_jpeg(tmp_path / tiny.name / "webcam" / "images" / "zebra" / "z.jpg", 0)
    with pytest.raises(SRDCInputError) as error:
        verify_benchmark(tiny, tmp_path / tiny.name)
    message = str(error.value)
    assert "A (amazon): " in message and "holds 6 images, Tiny benchmark domain 'amazon' has 7" in message
    assert "W (webcam): " in message and "missing none, unexpected ['zebra'] (4 found, 3 expected)" in message


def test_image_list_benchmarks_check_labels_and_rewrite_prefixes(tmp_path):
    bench = Benchmark(
        name="tinyclef", title="Tiny CLEF", classes=("a", "b"),
        domains=(BenchmarkDomain("c", "C", 3, ("c_list.txt", "c")),),
        archive="x.zip", md5=None, urls=(), homepage="-", list_prefix=("/data/image-clef/", ""),
    )
    root = tmp_path / "tinyclef"
    for i in range(3):
        make_jpeg(root / "c" / f"{i}.jpg", i)
    (root / "c_list.txt").write_text("/data/image-clef/c/0.jpg 0\n/data/image-clef/c/1.jpg 1\n"
                                     "/data/image-clef/c/2.jpg 1\n")
    assert verify_benchmark(bench, root) == {"c": 3}
    (root / "c_list.txt").write_text("c/0.jpg 0\nc/1.jpg 1\nc/2.jpg 2\n")
    with pytest.raises(SRDCInputError, match=r"c_list\.txt has label 2, but Tiny CLEF has 2 classes"):
        verify_benchmark(bench, root)
