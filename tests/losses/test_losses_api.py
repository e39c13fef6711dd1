"""The public names of docs/api.md are importable from jaxssl.losses with the contract's
argument names (other JAX projects import them)."""

import inspect

import jaxssl.losses as L

CONTRACT = {
    "dino_loss": ["student_logits", "teacher_logits", "center", "student_temp", "teacher_temp"],
    "update_center": ["center", "teacher_logits", "momentum", "axis_name"],
    "ibot_patch_loss": ["student_patch_logits", "teacher_patch_logits", "masks", "center",
                        "student_temp", "teacher_temp"],
    "koleo_loss": ["x", "eps", "chunk_size"],
    "koleo_proto_loss": ["prototypes", "eps", "chunk_size"],
    "count_unique_prototypes": ["prototypes", "threshold"],
    "balance_similarities": ["similarities", "cluster_sizes", "boost"],
    "update_cluster_sizes": ["cluster_sizes", "balanced_similarities", "momentum", "axis_name"],
    "excb_loss": ["direct_sims", "predictor_sims", "teacher_sims", "cluster_sizes",
                  "student_temp", "teacher_temp", "boost", "momentum", "pairing", "axis_name"],
    "random_partition": ["key", "num_prototypes", "block_size"],
    "carp_loss": ["student_logits", "teacher_logits", "partition", "entropy_weight",
                  "axis_name"],
    "sharpen": ["probs", "temperature"],
    "sinkhorn": ["probs", "num_iters", "axis_name"],
    "uniform_prior": ["num_prototypes"],
    "power_law_prior": ["num_prototypes", "exponent"],
    "prior_matching_loss": ["mean_probs", "prior", "direction"],
    "msn_loss": ["anchors", "targets", "prototypes", "temperature", "sharpen_temperature",
                 "sinkhorn_iters", "prior", "prior_direction", "regularization_weight",
                 "axis_name"],
}

DEFAULTS = {
    ("dino_loss", "student_temp"): 0.1, ("dino_loss", "teacher_temp"): 0.04,
    ("update_center", "momentum"): 0.9, ("koleo_loss", "eps"): 1e-8,
    ("balance_similarities", "boost"): 1.01, ("update_cluster_sizes", "momentum"): 0.999,
    ("carp_loss", "entropy_weight"): 1.0, ("sinkhorn", "num_iters"): 3,
    ("power_law_prior", "exponent"): 0.25, ("prior_matching_loss", "direction"): "mean_to_prior",
    ("excb_loss", "pairing"): "paper",
    ("msn_loss", "temperature"): 0.1, ("msn_loss", "sharpen_temperature"): 0.25,
}


def test_every_contract_function_is_exported_with_its_arguments():
    for name, args in CONTRACT.items():
        fn = getattr(L, name)
        params = list(inspect.signature(fn).parameters)
        assert params[: len(args)] == args or all(a in params for a in args), (name, params)
        assert name in L.__all__


def test_contract_defaults():
    for (name, arg), value in DEFAULTS.items():
        assert inspect.signature(getattr(L, name)).parameters[arg].default == value, (name, arg)
