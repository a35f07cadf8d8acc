namespace Celer.Grammars.Json;

/// <summary>
/// The contents of strings with a JSON Schema <c>format</c>, as grammars written out here rather than as regular
/// expressions, so each one is exact where it matters (days per month and leap years in dates, 0–255 in IPv4
/// addresses, 0–65535 in ports). Each is a subset of its RFC's syntax that a model writes naturally, that needs no
/// escape inside a JSON string, and that JsonSchema.Net's format checks accept: dates and times in upper case with "T"
/// and no leap second, e-mail addresses without quoted local parts and with a top-level domain of letters, host names
/// without "--", URIs with an authority (scheme://host), IPv6 addresses in full eight-group form. Unknown formats get
/// null: <c>format</c> is an annotation in JSON Schema 2020-12, and XGrammar ignores the formats it does not know.
/// </summary>
internal static class JsonStringFormats
{
    public static GrammarExpr? Body(string format) => format switch
    {
        "date" => Date(),
        "time" => Time(),
        "date-time" => GrammarExpr.Sequence(Date(), GrammarExpr.Literal("T"), Time()),
        "email" => GrammarExpr.Sequence(LocalPart(), GrammarExpr.Literal("@"), DomainName(minLabels: 1), GrammarExpr.Literal("."), TopLevelDomain()),
        "hostname" => DomainName(minLabels: 1),
        "ipv4" => Ipv4(),
        "ipv6" => GrammarExpr.Sequence(Hex(1, 4), GrammarExpr.Repeat(GrammarExpr.Sequence(GrammarExpr.Literal(":"), Hex(1, 4)), 7, 7)),
        "uuid" => GrammarExpr.Sequence(Hex(8, 8), GrammarExpr.Literal("-"), Hex(4, 4), GrammarExpr.Literal("-"), Hex(4, 4), GrammarExpr.Literal("-"),
            Hex(4, 4), GrammarExpr.Literal("-"), Hex(12, 12)),
        "uri" => Uri(),
        _ => null,
    };

    // RFC 3339 full-date, years 0001–9999 (0000 is not a year .NET or most validators accept); 29 February only in
    // leap years: divisible by 4, and by 400 when a century.
    private static GrammarExpr Date()
    {
        var year = JsonNumberRanges.SameLength("0001", "9999");
        var leapInCentury = Choice("04 08 12 16 20 24 28 32 36 40 44 48 52 56 60 64 68 72 76 80 84 88 92 96");
        var leapYear = GrammarExpr.Choice(
            GrammarExpr.Sequence(Digits(2), leapInCentury),
            GrammarExpr.Sequence(leapInCentury, GrammarExpr.Literal("00")));
        var thirtyOne = GrammarExpr.Sequence(Choice("01 03 05 07 08 10 12"), GrammarExpr.Literal("-"), JsonNumberRanges.SameLength("01", "31"));
        var thirty = GrammarExpr.Sequence(Choice("04 06 09 11"), GrammarExpr.Literal("-"), JsonNumberRanges.SameLength("01", "30"));
        var february = GrammarExpr.Sequence(GrammarExpr.Literal("02-"), JsonNumberRanges.SameLength("01", "28"));
        return GrammarExpr.Choice(
            GrammarExpr.Sequence(year, GrammarExpr.Literal("-"), GrammarExpr.Choice(thirtyOne, thirty, february)),
            GrammarExpr.Sequence(leapYear, GrammarExpr.Literal("-02-29")));
    }

    // RFC 3339 full-time: hh:mm:ss, optional fraction, then Z or an offset.
    private static GrammarExpr Time()
    {
        var hour = JsonNumberRanges.SameLength("00", "23");
        var minute = JsonNumberRanges.SameLength("00", "59");
        var fraction = GrammarExpr.Optional(GrammarExpr.Sequence(GrammarExpr.Literal("."), GrammarExpr.Plus(JsonSyntax.Digit)));
        var offset = GrammarExpr.Choice(GrammarExpr.Literal("Z"), GrammarExpr.Sequence(Set("+-"), hour, GrammarExpr.Literal(":"), minute));
        return GrammarExpr.Sequence(hour, GrammarExpr.Literal(":"), minute, GrammarExpr.Literal(":"), minute, fraction, offset);
    }

    // RFC 5322 dot-atom: atext runs joined by single dots, at most 64 characters (RFC 5321's limit on a local part).
    private static GrammarExpr LocalPart()
    {
        var atext = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~");
        return GrammarExpr.Sequence(GrammarExpr.Repeat(atext, 1, 32), GrammarExpr.Repeat(GrammarExpr.Sequence(GrammarExpr.Literal("."), GrammarExpr.Repeat(atext, 1, 15)), 0, 2));
    }

    // RFC 1123 host names: labels of letters and digits with single inner hyphens ("--" in the third and fourth place
    // marks an IDNA label, RFC 5891, which validators check as punycode). At most four labels of at most 39 characters
    // here (RFC 1035 allows 63), which keeps an e-mail address (local part, @, domain, top-level domain) within
    // RFC 5321's 254 characters.
    private static GrammarExpr DomainName(int minLabels)
    {
        var letterOrDigit = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        var label = GrammarExpr.Sequence(letterOrDigit, GrammarExpr.Repeat(GrammarExpr.Sequence(GrammarExpr.Optional(GrammarExpr.Literal("-")), letterOrDigit), 0, 19));
        return GrammarExpr.Sequence(label, GrammarExpr.Repeat(GrammarExpr.Sequence(GrammarExpr.Literal("."), label), minLabels - 1, 3));
    }

    // The last label of an e-mail domain: letters only, at least two, as every real top-level domain is (validators
    // such as JsonSchema.Net insist on it).
    private static GrammarExpr TopLevelDomain() => GrammarExpr.Repeat(Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), 2, 18);

    private static GrammarExpr Ipv4()
    {
        var octet = JsonNumberRanges.Integers(0, 255);
        return GrammarExpr.Sequence(octet, GrammarExpr.Repeat(GrammarExpr.Sequence(GrammarExpr.Literal("."), octet), 3, 3));
    }

    // RFC 3986 URI with an authority: scheme "://" host [":" port] path ["?" query] ["#" fragment]; path, query and
    // fragment characters are the unreserved ones and percent escapes, plus '/' (and '=' '&' in a query).
    private static GrammarExpr Uri()
    {
        const string Unreserved = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~";
        var scheme = GrammarExpr.Sequence(Set("abcdefghijklmnopqrstuvwxyz"), GrammarExpr.Star(Set("abcdefghijklmnopqrstuvwxyz0123456789+.-")));
        var escape = GrammarExpr.Sequence(GrammarExpr.Literal("%"), Hex(2, 2));
        var segment = GrammarExpr.Star(GrammarExpr.Choice(Set(Unreserved), escape));
        var path = GrammarExpr.Star(GrammarExpr.Sequence(GrammarExpr.Literal("/"), segment));
        var query = GrammarExpr.Star(GrammarExpr.Choice(Set(Unreserved + "/=&"), escape));
        var fragment = GrammarExpr.Star(GrammarExpr.Choice(Set(Unreserved + "/"), escape));
        return GrammarExpr.Sequence(scheme, GrammarExpr.Literal("://"), DomainName(minLabels: 1),
            GrammarExpr.Optional(GrammarExpr.Sequence(GrammarExpr.Literal(":"), JsonNumberRanges.Integers(0, 65535))), path,
            GrammarExpr.Optional(GrammarExpr.Sequence(GrammarExpr.Literal("?"), query)),
            GrammarExpr.Optional(GrammarExpr.Sequence(GrammarExpr.Literal("#"), fragment)));
    }

    private static GrammarExpr Hex(int min, int max) => GrammarExpr.Repeat(Set("0123456789abcdefABCDEF"), min, max);

    private static GrammarExpr Digits(int count) => GrammarExpr.Repeat(JsonSyntax.Digit, count, count);

    private static GrammarExpr Set(string chars) => new ByteSetExpr(SetOf(chars));

    private static ByteSet SetOf(string chars) => chars.Aggregate(ByteSet.Empty, (set, c) => set.Union(ByteSet.Of((byte)c)));

    // Any one of the space-separated literals.
    private static GrammarExpr Choice(string literals) => GrammarExpr.Choice(literals.Split(' ').Select(GrammarExpr.Literal));
}
