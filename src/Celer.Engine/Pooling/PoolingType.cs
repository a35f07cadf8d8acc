namespace Celer.Engine;

/// <summary>How a sequence's final hidden states become one vector (vLLM's <c>PoolingType</c>, sentence-transformers' pooling modes).</summary>
public enum PoolingType
{
    /// <summary>The last token's hidden state (decoder embedders: Qwen3-Embedding, gte-Qwen2).</summary>
    Last,

    /// <summary>The mean over every token of the sequence.</summary>
    Mean,

    /// <summary>The first token's hidden state (BERT's [CLS]).</summary>
    Cls,

    /// <summary>The elementwise maximum over every token of the sequence (sentence-transformers' max_tokens).</summary>
    Max,
}
