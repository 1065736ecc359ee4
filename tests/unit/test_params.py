"""core.pipeline.params: one table per request reads, writes and range-checks its URL, with one wording per fault."""

from dataclasses import dataclass

import pytest

from core.analysis.ambiguity import AmbiguityRequest, preset_request
from core.analysis.bias import BiasSpec
from core.analysis.classes import ClassListSpec
from core.pipeline.generate import RunRequest
from core.pipeline.params import Param, finite_number, out_of_range, read_params, whole_number, write_params


@dataclass(frozen=True)
class Toy:
    name: str = "a"
    count: int = 3
    scale: float | None = None
    colour: str = "red"


TABLE = (
    Param("name", "name"),
    Param("count", "count", whole_number, low=1, high=9, why="nine is the most a toy holds."),
    Param("scale", "scale", finite_number, optional=True),
    Param("colour", "colour", known=lambda: ("red", "blue"), label="colour"),
)


def test_reading_a_link_keeps_good_values_and_names_each_bad_one():
    values, problems = read_params(TABLE, {"name": "b", "count": "x", "scale": "inf", "colour": "green"})
    assert values == {"name": "b"}
    assert problems == [
        "The link's 'count' is 'x', not a whole number: the default is used.",
        "The link's 'scale' is 'inf', not a number: the default is used.",
        "The link names an unknown colour 'green': the default is used.",
    ]
    assert read_params(TABLE, {"scale": " "}) == ({}, [])  # an optional field left blank is unset, not wrong


def test_writing_leaves_unset_optional_fields_out_and_round_trips():
    toy = Toy("b", 4, 2.5, "blue")
    assert write_params(toy, TABLE) == {"name": "b", "count": "4", "scale": "2.5", "colour": "blue"}
    assert write_params(Toy(), TABLE) == {"name": "a", "count": "3", "colour": "red"}
    values, problems = read_params(TABLE, write_params(toy, TABLE))
    assert Toy(**values) == toy and problems == []


def test_range_sentences_say_the_bounds_the_value_and_why():
    assert out_of_range(Toy(count=12, colour="green"), TABLE) == [
        "Count must be between 1 and 9 (got 12): nine is the most a toy holds.",
        "Unknown colour 'green'. Pick one of: red, blue.",
    ]
    assert out_of_range(Toy(), TABLE) == []


@pytest.mark.parametrize("request_type,marker", [(RunRequest, {"prompt": "a tench"}),
                                                 (ClassListSpec, {"classes": "tench,church"}),
                                                 (BiasSpec, {"prof": "CEO"})])
def test_every_page_says_the_same_thing_for_the_same_fault(request_type, marker):
    _, problems = request_type.from_params({**marker, "n": "many", "clip": "ViT-Z-99"})
    assert "The link's 'n' is 'many', not a whole number: the default is used." in problems
    assert "The link names an unknown CLIP model 'ViT-Z-99': the default is used." in problems


def test_every_request_round_trips_through_its_url():
    run = RunRequest("a tench", 8, "tiny-random", 3, 4.5, 64, 7, "blurry", "tiny-random")
    assert RunRequest.from_params(run.to_params()) == (run, [])
    spec = ClassListSpec(("tench", "church"), "imagenette", n=4, n_natural=6, generator="tiny-random",
                         clip="tiny-random", first_seed=2, steps=3, guidance=2.5,
                         lexicon=(("axolotl", "salamander", "a Mexican salamander"),))
    assert ClassListSpec.from_params(spec.to_params()) == (spec, [])
    bias = BiasSpec(("", "ambitious"), ("CEO",), 4, "tiny-random", "tiny-random", 3, 2.0, 64, 1, (2, 3))
    assert BiasSpec.from_params(bias.to_params()) == (bias, [])
    ambiguity = preset_request("crane", n=4, generator="tiny-random", clip="tiny-random")
    assert AmbiguityRequest.from_params(ambiguity.to_params()) == (ambiguity, [])


def test_a_model_folder_outside_the_model_roots_is_refused_with_the_reason(tmp_path):
    _, problems = RunRequest.from_params({"prompt": "a tench", "generator": f"local:{tmp_path}"})
    assert len(problems) == 1 and problems[0].startswith(f"The link's 'generator' is 'local:{tmp_path}': ")
    assert problems[0].endswith("The default is used.")
