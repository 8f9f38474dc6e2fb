"""Built-in training tasks: ``digits`` (digits-mlp, digits-cnn), ``tinylm`` (tinylm-pretrain) and
``finetune`` (causal-lm-finetune); ``_corpus`` generates the tinylm language, ``_lm_common``
holds what the language-model tasks share."""
