"""Test-session environment, set before any notebook kernel starts (kernels inherit it).

Solution notebooks run with MI_COURSE_STRICT=1, so a solution that fails its own check fails
the suite instead of quietly falling back to the reference.
"""

import os
import tempfile

os.environ.setdefault("MI_COURSE_PROGRESS", os.path.join(tempfile.mkdtemp(prefix="mi-course-"), "progress.json"))
os.environ["MI_COURSE_STRICT"] = "1"
os.environ["TQDM_DISABLE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
