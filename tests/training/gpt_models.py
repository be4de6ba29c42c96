"""GPT models of the Megatron papers (Narayanan et al. 2021, arXiv 2104.04473, Table 1; Korthikanti et al.
2022, arXiv 2205.05198, Table 3) as inline model specs: ffn = 4h, biases, LayerNorm, tied embeddings,
a vocabulary of 51,200 (GPT-2's 50,257 padded to a multiple of 1024)."""


def gpt(name, layers, hidden, heads):
    return {
        "name": name, "num_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
        "num_kv_heads": heads, "head_dim": hidden // heads, "intermediate_size": 4 * hidden, "vocab_size": 51200,
        "tie_word_embeddings": True, "gated_mlp": False, "attention_bias": True, "attention_out_bias": True,
        "mlp_bias": True, "norm": "layernorm",
    }


GPT3_175B = gpt("gpt3-175b", 96, 12288, 96)
MEGATRON_22B = gpt("megatron-22b", 48, 6144, 64)
TURING_530B = gpt("turing-530b", 105, 20480, 128)
MEGATRON_1T = gpt("megatron-1t", 128, 25600, 160)
