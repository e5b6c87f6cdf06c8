"""Post-training compression of pretrained causal LMs: low rank and tensor trains, plain and
activation-aware, calibrated block by block.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
    >>> from qtensorformer.nn.replace import replace_modules
    >>> replace_modules(model, TTConfig(ratio=0.5, topology="strict"))
    ['0', '2']
"""

from .analysis import AnalysisConfig, AnalysisReport, analyze
from .api import compress_, layer_statistics, select_linears
from .budget import allocate_spectrum, dense_rank, param_budget, uniform_rank
from .calibrate import (
    BLOCK_PATHS,
    InputStats,
    check_calibration,
    find_blocks,
    is_compressible,
)
from .checkpoint import layer_spec, load_compressed, read_manifest, save_compressed
from .config import (
    ALLOCATIONS,
    METHODS,
    TOPOLOGIES,
    ASVDConfig,
    BasisSharingConfig,
    CalibrationConfig,
    MethodConfig,
    SVDConfig,
    SVDLLMConfig,
    TTAwareConfig,
    TTConfig,
    TTNSConfig,
    method_config,
)
from .correlation import Correlation, pearson, spearman
from .evaluate import (
    PerplexityResult,
    calibration_ids,
    find_raw_text,
    forward_logits,
    measure_tokens_per_second,
    raw_text_perplexity,
    text_token_ids,
    tokenize_text,
)
from .heal import HealConfig, HealResult, TrainableLM, heal
from .linalg import activation_error, weight_error, whitening
from .methods import compress_matrix
from .models import (
    SMOLLM2_FILE,
    SMOLLM2_INSTALL,
    LoadedModel,
    is_compressed_folder,
    load_causal_lm,
    load_compressed_model,
    smollm2_gguf_path,
)
from .pipeline import CompressRun, compress_model, default_holdout
from .sampling import continue_text
from .summary import CompressionReport, ModuleReport
from .ttns import TTNSFit, TypeFit, fit_ttns, fit_type, layer_coefficients

__all__ = [
    "ALLOCATIONS",
    "BLOCK_PATHS",
    "METHODS",
    "SMOLLM2_FILE",
    "SMOLLM2_INSTALL",
    "TOPOLOGIES",
    "ASVDConfig",
    "AnalysisConfig",
    "AnalysisReport",
    "BasisSharingConfig",
    "CalibrationConfig",
    "CompressRun",
    "CompressionReport",
    "Correlation",
    "HealConfig",
    "HealResult",
    "InputStats",
    "LoadedModel",
    "MethodConfig",
    "ModuleReport",
    "PerplexityResult",
    "SVDConfig",
    "SVDLLMConfig",
    "TTAwareConfig",
    "TTConfig",
    "TTNSConfig",
    "TTNSFit",
    "TrainableLM",
    "TypeFit",
    "activation_error",
    "allocate_spectrum",
    "analyze",
    "calibration_ids",
    "check_calibration",
    "compress_",
    "compress_matrix",
    "compress_model",
    "continue_text",
    "default_holdout",
    "dense_rank",
    "find_blocks",
    "find_raw_text",
    "fit_ttns",
    "fit_type",
    "forward_logits",
    "heal",
    "is_compressed_folder",
    "is_compressible",
    "layer_coefficients",
    "layer_spec",
    "layer_statistics",
    "load_causal_lm",
    "load_compressed",
    "load_compressed_model",
    "measure_tokens_per_second",
    "method_config",
    "param_budget",
    "pearson",
    "raw_text_perplexity",
    "read_manifest",
    "save_compressed",
    "select_linears",
    "smollm2_gguf_path",
    "spearman",
    "text_token_ids",
    "tokenize_text",
    "uniform_rank",
    "weight_error",
    "whitening",
]
