"""`python -m bench [--quick] [--json PATH]`: see bench/README.md."""

import sys

from bench import offline_and_quiet

offline_and_quiet()  # before anything imports huggingface_hub / transformers / diffusers

from bench.cli import main  # noqa: E402

sys.exit(main())
