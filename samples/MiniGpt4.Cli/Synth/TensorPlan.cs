namespace MiniGpt4.Cli.Synth;

/// <summary>How a tensor's random values are drawn.</summary>
internal enum Init
{
    /// <summary>N(0, 0.02): matrices, embeddings, biases.</summary>
    Weight,
    /// <summary>N(1, 0.1): norm scales (around 1, not exactly 1, so a mixed-up norm shows in the output).</summary>
    Norm,
}

/// <summary>One tensor of a checkpoint: its key, shape and how it is filled.</summary>
internal sealed record TensorSpec(string Key, long[] Shape, Init Init = Init.Weight)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// The tensors of each released file, in the order and with the key names the releases use: EVA-ViT-g
/// (LAVIS names), the BLIP-2 checkpoint (Q-Former, queries, <c>ln_vision</c>, <c>t5_proj</c>), the stage-2
/// projection (with MiniGPT-v2's LoRA adapters) and the Hugging Face LLaMA state dict.
/// </summary>
internal static class TensorPlan
{
    public static List<TensorSpec> Vision(int blocks)
    {
        const int w = EvaVitG.Width, m = EvaVitG.MlpHidden, g = EvaVitG.PositionGrid;
        var list = new List<TensorSpec>
        {
            new("cls_token", [1, 1, w]),
            new("pos_embed", [1, 1 + g * g, w]),
            new("patch_embed.proj.weight", [w, 3, EvaVitG.Patch, EvaVitG.Patch]),
            new("patch_embed.proj.bias", [w]),
        };
        for (var i = 0; i < blocks; i++)
        {
            var p = $"blocks.{i}.";
            list.AddRange(
            [
                new(p + "norm1.weight", [w], Init.Norm), new(p + "norm1.bias", [w]),
                new(p + "attn.q_bias", [w]), new(p + "attn.v_bias", [w]),
                new(p + "attn.qkv.weight", [3 * w, w]),
                new(p + "attn.proj.weight", [w, w]), new(p + "attn.proj.bias", [w]),
                new(p + "norm2.weight", [w], Init.Norm), new(p + "norm2.bias", [w]),
                new(p + "mlp.fc1.weight", [m, w]), new(p + "mlp.fc1.bias", [m]),
                new(p + "mlp.fc2.weight", [w, m]), new(p + "mlp.fc2.bias", [w]),
            ]);
        }
        return list;
    }

    public static List<TensorSpec> QFormer()
    {
        const int h = QFormerBase.Hidden, f = QFormerBase.Intermediate, v = EvaVitG.Width;
        var list = new List<TensorSpec>
        {
            new("query_tokens", [1, QFormerBase.Queries, h]),
            new("Qformer.bert.embeddings.LayerNorm.weight", [h], Init.Norm),
            new("Qformer.bert.embeddings.LayerNorm.bias", [h]),
        };
        void Linear(string key, long outDim, long inDim) { list.Add(new(key + ".weight", [outDim, inDim])); list.Add(new(key + ".bias", [outDim])); }
        void LayerNorm(string key) { list.Add(new(key + ".weight", [h], Init.Norm)); list.Add(new(key + ".bias", [h])); }
        for (var i = 0; i < QFormerBase.Layers; i++)
        {
            var p = $"Qformer.bert.encoder.layer.{i}.";
            Linear(p + "attention.self.query", h, h);
            Linear(p + "attention.self.key", h, h);
            Linear(p + "attention.self.value", h, h);
            Linear(p + "attention.output.dense", h, h);
            LayerNorm(p + "attention.output.LayerNorm");
            if (i % QFormerBase.CrossAttentionFrequency == 0)
            {
                Linear(p + "crossattention.self.query", h, h);
                Linear(p + "crossattention.self.key", h, v);
                Linear(p + "crossattention.self.value", h, v);
                Linear(p + "crossattention.output.dense", h, h);
                LayerNorm(p + "crossattention.output.LayerNorm");
            }
            Linear(p + "intermediate_query.dense", f, h);
            Linear(p + "output_query.dense", h, f);
            LayerNorm(p + "output_query.LayerNorm");
        }
        list.Add(new("ln_vision.weight", [v], Init.Norm));
        list.Add(new("ln_vision.bias", [v]));
        Linear("t5_proj", QFormerBase.T5Width, h);
        return list;
    }

    /// <summary>The stage-2 checkpoint: MiniGPT-v2's LoRA adapters on q_proj and v_proj (PEFT names), then <c>llama_proj</c>.</summary>
    public static List<TensorSpec> Projection(SynthPreset preset, int layers)
    {
        var list = new List<TensorSpec>();
        if (preset.LoraRank is int r)
        {
            long h = preset.Llm.Hidden;
            for (var i = 0; i < layers; i++)
                foreach (var proj in new[] { "q_proj", "v_proj" })
                {
                    var p = $"llama_model.base_model.model.model.layers.{i}.self_attn.{proj}.";
                    list.Add(new(p + "lora_A.weight", [r, h]));
                    list.Add(new(p + "lora_B.weight", [h, r]));
                }
        }
        list.Add(new("llama_proj.weight", [preset.Llm.Hidden, preset.ProjectionInput]));
        list.Add(new("llama_proj.bias", [preset.Llm.Hidden]));
        return list;
    }

    /// <summary>The Hugging Face <c>LlamaForCausalLM</c> state dict with <paramref name="layers"/> blocks.</summary>
    public static List<TensorSpec> Llm(LlmShape s, int layers)
    {
        long h = s.Hidden, kv = (long)s.KvHeads * s.HeadDim, f = s.Intermediate;
        var list = new List<TensorSpec> { new("model.embed_tokens.weight", [s.Vocab, h]) };
        for (var i = 0; i < layers; i++)
        {
            var p = $"model.layers.{i}.";
            list.AddRange(
            [
                new(p + "self_attn.q_proj.weight", [h, h]),
                new(p + "self_attn.k_proj.weight", [kv, h]),
                new(p + "self_attn.v_proj.weight", [kv, h]),
                new(p + "self_attn.o_proj.weight", [h, h]),
                new(p + "mlp.gate_proj.weight", [f, h]),
                new(p + "mlp.up_proj.weight", [f, h]),
                new(p + "mlp.down_proj.weight", [h, f]),
                new(p + "input_layernorm.weight", [h], Init.Norm),
                new(p + "post_attention_layernorm.weight", [h], Init.Norm),
            ]);
        }
        list.Add(new("model.norm.weight", [h], Init.Norm));
        list.Add(new("lm_head.weight", [s.Vocab, h]));
        return list;
    }
}
