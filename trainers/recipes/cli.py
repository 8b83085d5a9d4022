"""`trainers rm`, `trainers dpo`, `trainers rlhf`: the preference recipes, with the options of
`trainers sft` plus their own. Registered on the `trainers` group by trainers/cli.py."""

from __future__ import annotations

import click

DEFAULT_LR = {"rm": 1e-5, "dpo": 1e-6, "rlhf": 1e-6}
LORA_LR = 1e-4
DATA_HELP = {"rm": "Output folder of `corpuskit render --mode preference` (datasets dir + manifest.json).",
             "dpo": "Output folder of `corpuskit render --mode preference` (datasets dir + manifest.json).",
             "rlhf": "Output folder of `corpuskit render --mode prompt` (datasets dir + manifest.json)."}
ROW_HELP = {"rm": "Pairs per device per micro-batch.", "dpo": "Pairs per device per micro-batch.",
            "rlhf": "Sampled replies per device per micro-batch (a multiple of --num-generations)."}


def _adapt_help(cmd: click.Command, name: str) -> click.Command:
    """The shared options speak of packed rows; say what --data and --batch-size are here."""
    for p in cmd.params:
        if p.name == "data":
            p.help = DATA_HELP[name]
        elif p.name == "batch_size":
            p.help = ROW_HELP[name]
    return cmd


def _run(command: str, kwargs: dict) -> None:
    from trainers.cli import require_train_extra

    require_train_extra(deepspeed=bool(kwargs.get("deepspeed")))
    try:
        import trl  # noqa: F401
    except ImportError as e:
        raise click.ClickException(f"trainers {command} needs TRL (cannot import trl: {e}); "
                                   "install it with: pip install corpuskit[train]") from e
    from trainers.recipes import common, dpo, rlhf, rm

    lr = kwargs.pop("lr")
    if lr is None:
        lr = LORA_LR if kwargs["lora"] else DEFAULT_LR[command]
    opts = common.AlignOptions(mode=command, lr=lr, **kwargs)
    {"rm": rm, "dpo": dpo, "rlhf": rlhf}[command].train(opts, echo=lambda m: click.echo(m, err=True))


def register(main: click.Group) -> None:
    from trainers.cli import clear_errors, training_options

    eval_fraction = click.option("--eval-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1,
                                 max_open=True), help="Share of the pairs held out (seeded split) to report accuracy on.")

    @main.command("rm")
    @training_options
    @eval_fraction
    @clear_errors
    def rm_cmd(**kwargs) -> None:
        """Reward model: a one-score head on the SFT model (or a config) trained on preference
        pairs with TRL's RewardTrainer; reports held-out pairwise accuracy. model/ loads with
        AutoModelForSequenceClassification.

        \b
        Example:
          trainers rm --data pairs/ --model sft-run/model --tokenizer tok/ --output rm-run/ \\
              --deepspeed zero2 --bf16 --lr 1e-5 --eval-fraction 0.05
        """
        _run("rm", kwargs)

    @main.command("dpo")
    @training_options
    @eval_fraction
    @click.option("--beta", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True),
                  help="DPO beta: how far the policy may move from the reference.")
    @click.option("--loss-type", default="sigmoid", show_default=True,
                  type=click.Choice(["sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair",
                                     "apo_zero", "apo_down"]), help="TRL DPO loss.")
    @clear_errors
    def dpo_cmd(**kwargs) -> None:
        """Direct Preference Optimisation with TRL's DPOTrainer; the reference is the starting
        model (or, with --lora, the base with the adapter off). Reports implicit-reward accuracy
        and margins.

        \b
        Example:
          trainers dpo --data pairs/ --model sft-run/model --tokenizer tok/ --output dpo-run/ \\
              --deepspeed zero3 --lora --bf16 --beta 0.1
        """
        _run("dpo", kwargs)

    @main.command("rlhf")
    @training_options
    @click.option("--reward-model", required=True, type=click.Path(exists=True, file_okay=False),
                  help="The model/ folder of a `trainers rm` run.")
    @click.option("--num-generations", default=4, show_default=True, type=click.IntRange(2),
                  help="Replies sampled per prompt (RLOO's leave-one-out baseline needs >= 2).")
    @click.option("--max-completion-length", default=64, show_default=True, type=click.IntRange(1),
                  help="Longest sampled reply in tokens.")
    @click.option("--beta", default=0.05, show_default=True, type=click.FloatRange(0),
                  help="KL coefficient towards the reference (the starting model).")
    @click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
                  help="Sampling temperature.")
    @clear_errors
    def rlhf_cmd(**kwargs) -> None:
        """Online RLHF with TRL's RLOOTrainer: sample replies to each prompt, score them with the
        reward model, optimise the policy with a KL penalty to the starting model; logs the mean
        reward.

        \b
        Example:
          trainers rlhf --data prompts/ --model sft-run/model --tokenizer tok/ \\
              --reward-model rm-run/model --output rlhf-run/ --num-generations 4 --batch-size 8
        """
        _run("rlhf", kwargs)

    for name, cmd in (("rm", rm_cmd), ("dpo", dpo_cmd), ("rlhf", rlhf_cmd)):
        _adapt_help(cmd, name)
