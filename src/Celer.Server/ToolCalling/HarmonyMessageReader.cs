using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>
/// gpt-oss's harmony markers as text. They are special tokens of its tokenizer (o200k_harmony), so they are in the
/// output only when it is decoded with <c>skip_special_tokens: false</c>. <c>&lt;|call|&gt;</c> and <c>&lt;|return|&gt;</c>
/// are also end-of-sequence tokens (generation_config's <c>eos_token_id</c>), whose text the detokenizer leaves out, so
/// the last message of an output usually ends with no marker at all.
/// </summary>
internal static class HarmonyMarkers
{
    public const string Start = "<|start|>";
    public const string Channel = "<|channel|>";
    public const string Message = "<|message|>";
    public const string Constrain = "<|constrain|>";
    public const string End = "<|end|>";
    public const string Call = "<|call|>";
    public const string Return = "<|return|>";

    /// <summary>The role gpt-oss writes after <c>&lt;|start|&gt;</c>; the chat template's generation prompt ends with it.</summary>
    public const string Assistant = "assistant";
}

/// <summary>
/// What a harmony message's header says: its channel (<c>analysis</c>, <c>commentary</c>, <c>final</c>), its recipient
/// (<c>to=functions.get_weather</c> for a function call) and its content type (<c>&lt;|constrain|&gt;json</c>, or a bare
/// <c>json</c> after the channel).
/// </summary>
internal sealed record HarmonyHeader(string? Channel, string? Recipient, string? ContentType)
{
    public const string Analysis = "analysis";
    public const string Final = "final";
    private const string FunctionsPrefix = "functions.";
    private const string RecipientPrefix = "to=";

    /// <summary>
    /// The function the message calls, or null: the recipient is <c>functions.NAME</c> in any channel (gpt-oss sometimes
    /// calls from <c>analysis</c>, and vLLM reads those as calls too). Built-in tools (<c>browser.search</c>,
    /// <c>python</c>) are not functions the client offered.
    /// </summary>
    public string? FunctionName =>
        Recipient is { } recipient && recipient.StartsWith(FunctionsPrefix, StringComparison.Ordinal)
        && recipient.Length > FunctionsPrefix.Length && recipient.Length - FunctionsPrefix.Length <= ToolCallExtractor.MaxNameLength
            ? recipient[FunctionsPrefix.Length..]
            : null;

    /// <summary>Reasoning: the analysis channel, unless the message calls a function.</summary>
    public bool IsReasoning => Channel == Analysis && FunctionName is null;

    /// <summary>vLLM reads the arguments as JSON when the content type says so, or says nothing (gpt-oss's usual output).</summary>
    public bool ArgumentsAreJson => ContentType is null || ContentType.Contains("json", StringComparison.Ordinal);

    /// <summary>
    /// Reads a header: the text between <c>&lt;|start|&gt;</c> and <c>&lt;|message|&gt;</c>, such as
    /// <c>assistant&lt;|channel|&gt;commentary to=functions.f &lt;|constrain|&gt;json</c> or, with the recipient first,
    /// <c>assistant to=functions.f&lt;|channel|&gt;commentary json</c>. Words are separated by whitespace and markers;
    /// the role (the first word before any channel) is not needed.
    /// </summary>
    public static HarmonyHeader Parse(ReadOnlySpan<char> header)
    {
        string? channel = null, recipient = null, contentType = null;
        var after = Marker.None;
        bool channelNamed = false;
        int pos = 0;
        while (pos < header.Length)
        {
            var rest = header[pos..];
            if (rest.StartsWith(HarmonyMarkers.Channel, StringComparison.Ordinal))
            {
                (after, channelNamed) = (Marker.Channel, false);
                pos += HarmonyMarkers.Channel.Length;
                continue;
            }
            if (rest.StartsWith(HarmonyMarkers.Constrain, StringComparison.Ordinal))
            {
                after = Marker.Constrain;
                pos += HarmonyMarkers.Constrain.Length;
                continue;
            }
            if (char.IsWhiteSpace(rest[0]))
            {
                pos++;
                continue;
            }
            int length = WordLength(rest);
            var word = rest[..length].ToString();
            pos += length;
            if (word.StartsWith(RecipientPrefix, StringComparison.Ordinal))
                recipient = word[RecipientPrefix.Length..];
            else if (after == Marker.Channel && !channelNamed)
                (channel, channelNamed) = (word, true);
            else if (after != Marker.None)
                contentType ??= word;
        }
        return new HarmonyHeader(channel, recipient, contentType);
    }

    /// <summary>A word ends at whitespace or at the next marker.</summary>
    private static int WordLength(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsWhiteSpace(text[i]) || (i > 0 && text[i..].StartsWith("<|", StringComparison.Ordinal)))
                return i;
        }
        return text.Length;
    }

    private enum Marker
    {
        None,
        Channel,
        Constrain,
    }
}

/// <summary>What a <see cref="HarmonyMessageReader"/> finds, in the order of the text.</summary>
internal interface IHarmonyListener
{
    /// <summary>Text outside any message: output that is not harmony at all, or text between messages.</summary>
    void OnText(ReadOnlySpan<char> text);

    /// <summary>
    /// A message begins. <paramref name="rawHeader"/> is its header as harmony writes it, from <c>&lt;|start|&gt;</c>
    /// through <c>&lt;|message|&gt;</c> (<c>&lt;|start|&gt;assistant</c> put back for the output's first message, whose
    /// opening is in the prompt).
    /// </summary>
    void OnMessageStart(HarmonyHeader header, string rawHeader);

    /// <summary>Text of the current message's body.</summary>
    void OnBody(ReadOnlySpan<char> text);

    /// <summary>
    /// The current message ended: with <paramref name="terminator"/> (<c>&lt;|end|&gt;</c>, <c>&lt;|call|&gt;</c>,
    /// <c>&lt;|return|&gt;</c>), with "" when the next message began without one, or with null at the end of the output.
    /// </summary>
    void OnMessageEnd(string? terminator);
}

/// <summary>
/// Splits gpt-oss output, as it streams, into harmony messages (the openai/harmony format): each is
/// <c>&lt;|start|&gt;assistant</c>, a header, <c>&lt;|message|&gt;</c>, the body, and <c>&lt;|end|&gt;</c> (or
/// <c>&lt;|call|&gt;</c> after a function call, <c>&lt;|return|&gt;</c> after the answer). The chat template's generation
/// prompt ends with <c>&lt;|start|&gt;assistant</c>, so the output begins inside the first header: with
/// <c>&lt;|channel|&gt;</c>, or with <c> to=</c> when the model names the recipient first. Output that begins any other way
/// is not harmony (special tokens were skipped, or another template) and is all text. Markers may arrive split over
/// deltas: text that may begin one is held until the next delta, or the end, settles it. The reader never throws on what
/// the model writes: a header that never closes, or is too long to be one, is text as written.
/// </summary>
internal sealed class HarmonyMessageReader(IHarmonyListener listener)
{
    // A header is a role, a channel, a recipient and a content type: far shorter than this (names are at most
    // ToolCallExtractor.MaxNameLength). Longer text before a <|message|> is not a header.
    private const int MaxHeaderLength = 1024;

    private static readonly string[] Openings = [HarmonyMarkers.Start, HarmonyMarkers.Channel, "to=", " to="];
    private static readonly string[] BodyEnds = [HarmonyMarkers.End, HarmonyMarkers.Call, HarmonyMarkers.Return, HarmonyMarkers.Start, HarmonyMarkers.Channel];
    private static readonly string[] HeaderBreaks = [HarmonyMarkers.End, HarmonyMarkers.Call, HarmonyMarkers.Return, HarmonyMarkers.Start];
    private static readonly string[] MessageOpenings = [HarmonyMarkers.Start, HarmonyMarkers.Channel];

    private enum State
    {
        Opening,
        Header,
        Body,
        Text,
    }

    private State _state;
    private bool _headerAfterStart;
    private string _held = "";

    public void Push(string text)
    {
        var input = _held.Length == 0 ? text : _held + text;
        _held = "";
        Read(input, final: false);
    }

    /// <summary>The end of the output: held text is what it looked like.</summary>
    public void Finish()
    {
        var input = _held;
        _held = "";
        Read(input, final: true);
    }

    private void Read(string input, bool final)
    {
        int pos = 0;
        while (true)
        {
            var rest = input.AsSpan(pos);
            switch (_state)
            {
                case State.Opening:
                {
                    var (at, _) = MarkerText.IndexOfAny(rest, Openings);
                    if (at == 0)
                    {
                        BeginHeader(rest, ref pos);
                        continue;
                    }
                    if (!final && MarkerText.MayBegin(rest, Openings))
                    {
                        _held = rest.ToString();
                        return;
                    }
                    _state = State.Text;
                    continue;
                }

                case State.Header:
                {
                    int end = rest.IndexOf(HarmonyMarkers.Message, StringComparison.Ordinal);
                    var header = end >= 0 ? rest[..end] : rest;
                    var (broken, _) = MarkerText.IndexOfAny(header, HeaderBreaks);
                    if (broken >= 0 || header.Length > MaxHeaderLength)
                    {
                        // Not a header after all: its text is text as written, from where it began.
                        int length = broken >= 0 ? broken : header.Length;
                        listener.OnText(string.Concat(_headerAfterStart ? HarmonyMarkers.Start : "", rest[..length].ToString()));
                        pos += length;
                        _state = State.Text;
                        continue;
                    }
                    if (end < 0)
                    {
                        if (!final)
                            _held = rest.ToString();
                        else if (!_headerAfterStart && rest.IndexOf("<|", StringComparison.Ordinal) < 0)
                            listener.OnText(rest); // "to=…" and nothing harmony about it: plain text.
                        // Otherwise the output was cut inside a header: there is no message to report (vLLM has none either).
                        return;
                    }
                    var raw = new StringBuilder(HarmonyMarkers.Start);
                    if (!_headerAfterStart)
                        raw.Append(HarmonyMarkers.Assistant);
                    raw.Append(header).Append(HarmonyMarkers.Message);
                    listener.OnMessageStart(HarmonyHeader.Parse(header), raw.ToString());
                    pos += end + HarmonyMarkers.Message.Length;
                    _state = State.Body;
                    continue;
                }

                case State.Body:
                {
                    var (at, which) = MarkerText.IndexOfAny(rest, BodyEnds);
                    if (at < 0)
                    {
                        int hold = final ? 0 : MarkerText.PartialSuffix(rest, BodyEnds);
                        listener.OnBody(rest[..^hold]);
                        _held = rest[^hold..].ToString();
                        if (final)
                            listener.OnMessageEnd(null);
                        return;
                    }
                    listener.OnBody(rest[..at]);
                    var marker = BodyEnds[which];
                    if (marker is HarmonyMarkers.Start or HarmonyMarkers.Channel)
                    {
                        // A new message without the old one's terminator.
                        listener.OnMessageEnd("");
                        pos += at;
                        BeginHeader(input.AsSpan(pos), ref pos);
                        continue;
                    }
                    listener.OnMessageEnd(marker);
                    pos += at + marker.Length;
                    _state = State.Text;
                    continue;
                }

                case State.Text:
                {
                    var (at, _) = MarkerText.IndexOfAny(rest, MessageOpenings);
                    if (at < 0)
                    {
                        int hold = final ? 0 : MarkerText.PartialSuffix(rest, MessageOpenings);
                        listener.OnText(rest[..^hold]);
                        _held = rest[^hold..].ToString();
                        return;
                    }
                    listener.OnText(rest[..at]);
                    pos += at;
                    BeginHeader(input.AsSpan(pos), ref pos);
                    continue;
                }
            }
        }
    }

    /// <summary>A header begins at <paramref name="text"/>: after <c>&lt;|start|&gt;</c> when it opens with one.</summary>
    private void BeginHeader(ReadOnlySpan<char> text, ref int pos)
    {
        _headerAfterStart = text.StartsWith(HarmonyMarkers.Start, StringComparison.Ordinal);
        if (_headerAfterStart)
            pos += HarmonyMarkers.Start.Length;
        _state = State.Header;
    }
}
