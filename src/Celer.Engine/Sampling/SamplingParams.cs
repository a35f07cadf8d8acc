using System.Globalization;

namespace Celer.Engine;

/// <summary>
/// Sampling parameters of one request, with vLLM's names, defaults and validation
/// (<c>vllm/sampling_params.py</c>). Immutable; <see cref="Validate"/> runs once at admission,
/// never inside the engine loop.
/// </summary>
public sealed record SamplingParams
{
    /// <summary>Cap on <see cref="N"/> and <see cref="BestOf"/>: each sample is a separate engine
    /// sequence, so an unbounded n is a denial of service (vLLM caps it with VLLM_MAX_N_SEQUENCES).</summary>
    public const int MaxN = 128;

    /// <summary>Cap on the number of stop strings. OpenAI allows 4; vLLM has no cap. 64 covers
    /// every real client while bounding the per-token stop-string scan.</summary>
    public const int MaxStopStrings = 64;

    /// <summary>Cap on the length (UTF-16 chars) of one stop string or bad word; the detokenizer holds
    /// back up to this many characters while streaming, so it bounds that buffer.</summary>
    public const int MaxStopStringLength = 256;

    /// <summary>Cap on bad words (vLLM's VLLM_MAX_NUM_BAD_WORDS default is 128 token sequences;
    /// each word yields at most two: with and without a leading space).</summary>
    public const int MaxBadWords = 128;

    /// <summary>Cap on <see cref="BadWordsTokenIds"/>: two tokenizations per bad word.</summary>
    public const int MaxBadWordsTokenSequences = 2 * MaxBadWords;

    /// <summary>logit_bias values are clamped to ±this (OpenAI's documented range).</summary>
    public const float MaxLogitBias = 100f;

    /// <summary>Temperatures in (0, 0.01) are raised to this (vLLM's _MAX_TEMP): dividing logits by less
    /// overflows fp32.</summary>
    public const float MinRandomTemperature = 0.01f;

    public int N { get; init; } = 1;
    public int? BestOf { get; init; }
    public float Temperature { get; init; } = 1f;        // 0 = greedy
    public float TopP { get; init; } = 1f;
    public int TopK { get; init; }                       // 0 or -1 = disabled (vLLM accepts both)
    public float MinP { get; init; }
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    public float RepetitionPenalty { get; init; } = 1f;
    public long? Seed { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    public bool IncludeStopStrInOutput { get; init; }
    public bool IgnoreEos { get; init; }
    public int? MaxTokens { get; init; } = 16;           // null = the rest of the context (resolved at admission)
    public int MinTokens { get; init; }
    public int? Logprobs { get; init; }                  // top-k logprobs per generated token (+ the sampled token's)
    public int? PromptLogprobs { get; init; }
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    public IReadOnlyList<int>? AllowedTokenIds { get; init; }
    public StructuredOutputsParams? StructuredOutputs { get; init; }

    /// <summary><see cref="StructuredOutputs"/> compiled for the model's vocabulary, attached at admission.</summary>
    internal Celer.Grammars.CompiledGrammar? Grammar { get; init; }
    public IReadOnlyList<string>? BadWords { get; init; }
    public IReadOnlyList<int[]>? BadWordsTokenIds { get; init; }  // filled from BadWords by the tokenizer at admission
    public bool SkipSpecialTokens { get; init; } = true;
    public bool SpacesBetweenSpecialTokens { get; init; } = true;

    /// <summary>True when the sampler takes the argmax. vLLM's rule is temperature &lt; 1e-5, but it first
    /// raises any temperature in (0, 0.01) to 0.01, so in effect only 0 is greedy.</summary>
    public bool IsGreedy => Temperature == 0f;

    /// <summary>
    /// Checks every field against vLLM's rules (<c>_verify_args</c> and the vocabulary checks of
    /// <c>verify</c>), in vLLM's order, with vLLM's messages. Temperature above 2 is rejected
    /// (OpenAI's bound, BAD_INPUT.md #10).
    /// </summary>
    /// <exception cref="SamplingParamsException">The first invalid field, named as in OpenAI's API.</exception>
    public void Validate(int vocabSize, int maxLogprobs = 20)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        ValidateSampleCount(N, "n");
        if (BestOf is { } bestOf)
        {
            ValidateSampleCount(bestOf, "best_of");
            if (bestOf < N)
                throw new SamplingParamsException("best_of", $"best_of must be greater than or equal to n, got n={N} and best_of={bestOf}.");
        }

        if (!(PresencePenalty >= -2f && PresencePenalty <= 2f))
            throw new SamplingParamsException("presence_penalty", $"presence_penalty must be in [-2, 2], got {Py(PresencePenalty)}.");
        if (!(FrequencyPenalty >= -2f && FrequencyPenalty <= 2f))
            throw new SamplingParamsException("frequency_penalty", $"frequency_penalty must be in [-2, 2], got {Py(FrequencyPenalty)}.");
        if (!float.IsFinite(RepetitionPenalty))
            throw new SamplingParamsException("repetition_penalty", $"repetition_penalty must be a finite number, got {Py(RepetitionPenalty)}.");
        if (RepetitionPenalty <= 0f)
            throw new SamplingParamsException("repetition_penalty", $"repetition_penalty must be greater than zero, got {Py(RepetitionPenalty)}.");

        if (!float.IsFinite(Temperature))
            throw new SamplingParamsException("temperature", $"temperature must be a finite number, got {Py(Temperature)}.");
        if (Temperature < 0f)
            throw new SamplingParamsException("temperature", $"temperature must be non-negative, got {Py(Temperature)}.");
        if (Temperature > 2f)
            throw new SamplingParamsException("temperature", $"temperature must be in [0, 2], got {Py(Temperature)}.");
        if (!(TopP > 0f && TopP <= 1f))
            throw new SamplingParamsException("top_p", $"top_p must be in (0, 1], got {Py(TopP)}.");
        if (TopK < -1)
            throw new SamplingParamsException("top_k", $"top_k must be 0 (disable), or at least 1, got {TopK}.");
        if (!(MinP >= 0f && MinP <= 1f))
            throw new SamplingParamsException("min_p", $"min_p must be in [0, 1], got {Py(MinP)}.");

        if (MaxTokens is < 1)
            throw new SamplingParamsException("max_tokens", $"max_tokens must be at least 1, got {MaxTokens}.");
        if (MinTokens < 0)
            throw new SamplingParamsException("min_tokens", $"min_tokens must be greater than or equal to 0, got {MinTokens}.");
        if (MaxTokens is { } maxTokens && MinTokens > maxTokens)
            throw new SamplingParamsException("min_tokens", $"min_tokens must be less than or equal to max_tokens={maxTokens}, got {MinTokens}.");

        ValidateLogprobCount(Logprobs, "logprobs", "sample", maxLogprobs);
        ValidateLogprobCount(PromptLogprobs, "prompt_logprobs", "prompt", maxLogprobs);

        ValidateStop();
        ValidateBadWords(vocabSize);

        // vLLM: greedy samples would all be identical, so n > 1 is a client mistake.
        if (IsGreedy && N > 1)
            throw new SamplingParamsException("n", $"n must be 1 when using greedy sampling, got {N}.");

        ValidateLogitBias(vocabSize);
        ThrowIfOutOfVocab(StopTokenIds, vocabSize, "stop_token_ids");
        if (AllowedTokenIds is { } allowed)
        {
            if (allowed.Count == 0)
                throw new SamplingParamsException("allowed_token_ids", "allowed_token_ids is not None and empty!");
            ThrowIfOutOfVocab(allowed, vocabSize, "allowed_token_ids");
        }

        if (StructuredOutputs is { } so)
        {
            if (so.KindCount != 1)
                throw new SamplingParamsException("structured_outputs", so.KindCount == 0
                    ? "You must use one kind of structured outputs constraint but none are specified."
                    : "You can only use one kind of structured outputs constraint but multiple are specified.");
            if (so.Choice is { } choices && (choices.Count == 0 || choices.Any(string.IsNullOrEmpty)))
                throw new SamplingParamsException("structured_outputs", "choice must be a non-empty list of non-empty strings.");
            if (so.ReasoningEndTokenIds is { } reasoningEnd)
            {
                if (reasoningEnd.Count == 0)
                    throw new SamplingParamsException("structured_outputs", "The end of reasoning must be at least one token.");
                ThrowIfOutOfVocab(reasoningEnd, vocabSize, "structured_outputs");
            }
        }
    }

    private static void ValidateSampleCount(int value, string param)
    {
        if (value < 1)
            throw new SamplingParamsException(param, $"{param} must be at least 1, got {value}.");
        if (value > MaxN)
            throw new SamplingParamsException(param, $"{param} must be at most {MaxN}, got {value}.");
    }

    private static void ValidateLogprobCount(int? value, string param, string kind, int maxLogprobs)
    {
        if (value is not { } count)
            return;
        // vLLM reads -1 as "the whole vocabulary"; with a finite server maximum that is always too many.
        if (count < -1)
            throw new SamplingParamsException(param, $"{param} must be non-negative or -1, got {count}.");
        if (count == -1 || count > maxLogprobs)
        {
            var requested = count == -1 ? "the whole vocabulary (-1)" : count.ToString(CultureInfo.InvariantCulture);
            throw new SamplingParamsException(param, $"Requested {kind} logprobs of {requested}, which is greater than max allowed: {maxLogprobs}");
        }
    }

    private void ValidateStop()
    {
        if (Stop.Count > MaxStopStrings)
            throw new SamplingParamsException("stop", $"stop can contain at most {MaxStopStrings} strings, got {Stop.Count}.");
        foreach (var s in Stop)
        {
            if (string.IsNullOrEmpty(s))
                throw new SamplingParamsException("stop", "stop cannot contain an empty string.");
            if (s.Length > MaxStopStringLength)
                throw new SamplingParamsException("stop", $"each stop string can be at most {MaxStopStringLength} characters, got one of {s.Length}.");
        }
    }

    private void ValidateBadWords(int vocabSize)
    {
        if (BadWords is { } words)
        {
            if (words.Count > MaxBadWords)
                throw new SamplingParamsException("bad_words", $"Too many bad words: {words.Count}. The max number is {MaxBadWords}.");
            foreach (var w in words)
            {
                if (string.IsNullOrEmpty(w))
                    throw new SamplingParamsException("bad_words", "bad_words cannot contain an empty string.");
                if (w.Length > MaxStopStringLength)
                    throw new SamplingParamsException("bad_words", $"each bad word can be at most {MaxStopStringLength} characters, got one of {w.Length}.");
            }
        }

        if (BadWordsTokenIds is not { } sequences)
            return;
        if (sequences.Count > MaxBadWordsTokenSequences)
            throw new SamplingParamsException("bad_words", $"Too many bad words after tokenization: {sequences.Count}. The max number is {MaxBadWordsTokenSequences}.");
        var invalid = new List<int>();
        foreach (var sequence in sequences)
        {
            if (sequence is null || sequence.Length == 0)
                throw new SamplingParamsException("bad_words", "bad_words entries must tokenize to at least one token.");
            foreach (var id in sequence)
            {
                if ((uint)id >= (uint)vocabSize)
                    invalid.Add(id);
            }
        }
        if (invalid.Count > 0)
            throw new SamplingParamsException("bad_words", $"The model vocabulary size is {vocabSize}, but the following tokens were specified as bad: {PyList(invalid)}. All token id values should be integers satisfying: 0 <= token_id <= {vocabSize - 1}.");
    }

    private void ValidateLogitBias(int vocabSize)
    {
        if (LogitBias is not { Count: > 0 } bias)
            return;
        var invalid = new List<int>();
        foreach (var (tokenId, value) in bias)
        {
            if ((uint)tokenId >= (uint)vocabSize)
                invalid.Add(tokenId);
            // ±Infinity is clamped to ±100 like any other large value; NaN has no place to clamp to.
            else if (float.IsNaN(value))
                throw new SamplingParamsException("logit_bias", $"logit_bias value for token {tokenId} is not a number.");
        }
        if (invalid.Count > 0)
        {
            invalid.Sort();
            throw new SamplingParamsException("logit_bias", $"token_id(s) {PyList(invalid)} in logit_bias contain out-of-vocab token ids. Vocabulary size: {vocabSize}");
        }
    }

    private static void ThrowIfOutOfVocab(IReadOnlyList<int> tokenIds, int vocabSize, string param)
    {
        List<int>? invalid = null;
        foreach (var id in tokenIds)
        {
            if ((uint)id >= (uint)vocabSize)
                (invalid ??= []).Add(id);
        }
        if (invalid is not null)
            throw new SamplingParamsException(param, $"token_id(s) {PyList(invalid)} in {param} contain out-of-vocab token ids. Vocabulary size: {vocabSize}");
    }

    // Python's spelling of numbers in vLLM's messages: "inf", "nan", shortest round-trip digits.
    private static string Py(float value) => value switch
    {
        float.PositiveInfinity => "inf",
        float.NegativeInfinity => "-inf",
        _ when float.IsNaN(value) => "nan",
        _ => value.ToString(CultureInfo.InvariantCulture),
    };

    private static string PyList(List<int> ids) => "[" + string.Join(", ", ids) + "]";
}
