namespace MiniGpt4.Cli;

/// <summary>Texts the help and the errors share.</summary>
internal static class HelpTexts
{
    public const string Root =
        "MiniGpt4.NET sample: chat about an image, generate one answer, answer a file of requests (batch), tokenize text, convert weights, synthesize a random-weight model, write and score the synthetic shapes world, train a projection, pretrain the toy language model, benchmark. Run '<command> --help' for a command's options.";

    /// <summary>Where the weights come from: shown by the root help and when a verb that needs a model has no --model.</summary>
    public const string Weights = """
        MiniGpt4.NET never downloads weights; get the released files yourself:
          MiniGPT-4 (Vicuna-7B):  eva_vit_g.pth (LAVIS), blip2_pretrained_flant5xxl.pth (LAVIS),
                                  prerained_minigpt4_7b.pth (MiniGPT-4 README), and the Vicuna-7B v0
                                  Hugging Face folder (config.json, tokenizer.model, weights).
          MiniGPT-4 (Llama-2):    eva_vit_g.pth, pretrained_minigpt4_llama2_7b.pth, Llama-2-7b-chat-hf.
        Put them in one folder with a minigpt4.json naming the files, e.g.
          { "variant": "minigpt4-vicuna0",
            "vision": { "checkpoint": "eva_vit_g.pth" },
            "qformer": { "checkpoint": "blip2_pretrained_flant5xxl.pth" },
            "projection": { "checkpoint": "prerained_minigpt4_7b.pth" },
            "llm": { "path": "vicuna-7b" } }
        then run:  generate --model <folder> --image photo.jpg --prompt "Describe this image."
        See README.md for details.
        """;

    /// <summary>What a verb that needs a model prints (to stderr, exit 2) when it has no --model.</summary>
    public const string NoModel = "No --model given. " + Weights;

    /// <summary>--model's help: not a parser-required option, so that its absence prints <see cref="NoModel"/>.</summary>
    public const string RequiredModelOption = "minigpt4.json or the folder holding it (required; the root --help says where to get the weights)";

    /// <summary>--model's help for the verbs that default to the bundled toy model.</summary>
    public const string ModelOption = "minigpt4.json or the folder holding it [default: the bundled toy model, toy-model/ beside the program; the root --help says where to get the real weights]";
}
