"""The served model's tensor contract: the names and dtypes of what goes in and comes out.

One definition for every party to it: the ONNX export (``export.onnx_model``), the Triton ``config.pbtxt``
(``export.triton_layout``), the local server and its runner (``serving``), the Triton client, the in-process
scorer (``moderation.scoring``) and the pipeline's evaluation. Renaming a tensor here renames it everywhere;
a model version exported under other names is refused at load (``export.onnx_model``).

Shapes are per row (Triton's batch dimension comes first): ``images`` is float32 [3, crop, crop] (NCHW, the
preprocessing preset's output), ``hashtag_logits`` float32 [num_labels], ``category_scores`` float32
[num_categories] (probabilities in [0, 1]).
"""

from __future__ import annotations

INPUT_NAME = "images"
HASHTAG_LOGITS = "hashtag_logits"
CATEGORY_SCORES = "category_scores"
OUTPUT_NAMES = (HASHTAG_LOGITS, CATEGORY_SCORES)

# The local server's extra output only: the registry version that scored each row (int64, shape [1] per row),
# so a hot swap never mislabels a decision. KServe's config.pbtxt has no such output; there Triton's
# response-level model_version is the registry version, and the client fills the same key from it.
VERSION_OUTPUT = "model_version"

# numpy dtype names (numpy is not a core dependency) and their Triton spellings (client / config.pbtxt).
TENSOR_DTYPE = "float32"
VERSION_DTYPE = "int64"
TRITON_DATATYPE = "FP32"
TRITON_CONFIG_DATATYPE = "TYPE_FP32"
