"""Constants every kind of test shares (conftest.py builds its fixtures from them; test modules import them
from here, never from a conftest, of which there is more than one)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # tests/suite.py -> the repository
# Real photos (ImageNet subsets, research and education terms) sit beside the repository in CI and on the team's
# machines, never inside it, and never on a user's machine. Every test that needs class folders of photos uses the
# generated folders below; the tests marked `real_photos` check the real ones in addition.
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
REAL_IMAGENETTE = SHARED_DATA / "imagenette224"
REAL_AMBIGUOUS = SHARED_DATA / "imagenet_samples_ambiguous"
# Set by .ci/run: there, a missing real-photo folder fails the run instead of skipping its tests.
REQUIRE_REAL_PHOTOS = "DDL_REQUIRE_REAL_PHOTOS"
# The flat ImageNet-style files of the ambiguous-names folder (<wnid>_<ImageNet class name>): ids and names only.
AMBIGUOUS_STEMS = [
    "n01580077_jay", "n01608432_kite", "n01847000_drake", "n02012849_crane", "n02108089_boxer",
    "n02113186_Cardigan", "n02123045_tabby", "n02123159_tiger_cat", "n02963159_cardigan", "n03126707_crane",
    "n03642806_laptop", "n03710637_maillot", "n03710721_maillot", "n03832673_notebook", "n04355933_sunglass",
    "n04356056_sunglasses",
]


PHOTOS_PER_CLASS = 24  # in the generated Imagenette-style folder (the real one has 100)
