"""File names and versions every artifact uses; one place so readers and writers agree."""

SCHEMA_VERSION = 1

CONFIG_NAME = "config.json"
BODY_WEIGHTS = "body.safetensors"
PACK_WEIGHTS = "embeddings.safetensors"
PACK_ADAPTER_WEIGHTS = "adapter.safetensors"
TASK_HEAD_WEIGHTS = "head.safetensors"
TASK_DELTA_WEIGHTS = "body_delta.safetensors"
TASK_ADAPTER_WEIGHTS = "task_adapter.safetensors"
TASK_SPECIAL_ROWS = "special_rows.safetensors"
TOKENIZER_DIR = "tokenizer"
MODEL_CARD = "README.md"
# A store-level file of evaluation results that push uploads and cards render.
EVAL_RESULTS = "eval_results.json"

# Files an artifact folder may hold beyond what its config lists (written by other tools).
IGNORED_FILES = frozenset({MODEL_CARD, ".gitattributes", "training_log.jsonl", "learning_curve.png"})

STORE_BODY = "body"
STORE_PACKS = "packs"
STORE_TASKS = "tasks"

# Tensor names inside pack files.
WORD_EMBEDDINGS = "word_embeddings"
OUTPUT_BIAS = "output_bias"
POSITION_EMBEDDINGS = "position_embeddings"

SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
