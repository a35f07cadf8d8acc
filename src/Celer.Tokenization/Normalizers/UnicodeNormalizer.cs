using System.Globalization;
using System.Text;

namespace Celer.Tokenization.Normalizers;

/// <summary>
/// NFC / NFD / NFKC / NFKD in managed code. The engine runs with InvariantGlobalization, where
/// <see cref="string.Normalize()"/> leaves non-ASCII text untouched, so the tables come from
/// UnicodeNormalization.data (see generate_unicode_normalization_data.py for its format) and
/// the algorithms follow UAX #15: full decomposition, canonical ordering, canonical composition.
/// </summary>
internal static class UnicodeNormalizer
{
    // Hangul syllables decompose and compose algorithmically (Unicode §3.12).
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Lazy<Tables> Data = new(Tables.Load);

    public static string Normalize(string text, NormalizationForm form)
    {
        bool compose = form is NormalizationForm.FormC or NormalizationForm.FormKC;
        bool compatibility = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        // Text below U+0300 is already NFC/NFD except for compatibility mappings in Latin-1
        // (U+00A0, ª, ², ¼…), and ASCII is invariant under all four forms.
        if (IsBelow(text, compatibility ? 0x80 : (compose ? 0x300 : 0xC0))) return text;

        var tables = Data.Value;
        var codePoints = new List<int>(text.Length);
        foreach (var rune in text.EnumerateRunes())
            Decompose(rune.Value, compatibility, tables, codePoints);
        OrderCanonically(codePoints, tables);
        if (compose) Compose(codePoints, tables);

        var sb = new StringBuilder(codePoints.Count);
        foreach (var cp in codePoints) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    private static bool IsBelow(string text, int limit)
    {
        foreach (var c in text)
            if (c >= limit) return false;
        return true;
    }

    private static void Decompose(int cp, bool compatibility, Tables tables, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (compatibility && tables.Compatibility.TryGetValue(cp, out var k)) output.AddRange(k);
        else if (tables.Canonical.TryGetValue(cp, out var d)) output.AddRange(d);
        else output.Add(cp);
    }

    /// <summary>Stable sort of each run of non-starters by combining class.</summary>
    private static void OrderCanonically(List<int> cps, Tables tables)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int ccc = tables.CombiningClass(cps[i]);
            if (ccc == 0) continue;
            int j = i;
            var cp = cps[i];
            while (j > 0 && tables.CombiningClass(cps[j - 1]) > ccc)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    /// <summary>Canonical composition: each character joins the last starter unless blocked.</summary>
    private static void Compose(List<int> cps, Tables tables)
    {
        if (cps.Count < 2) return;
        int starterPos = 0;
        int lastClass = tables.CombiningClass(cps[0]);
        // A leading non-starter must never let a later character compose across it.
        if (lastClass != 0) lastClass = 256;
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int cp = cps[read];
            int cls = tables.CombiningClass(cp);
            if ((lastClass < cls || lastClass == 0) && TryCompose(cps[starterPos], cp, tables, out var composite))
            {
                cps[starterPos] = composite;
                continue;
            }
            if (cls == 0) starterPos = write;
            lastClass = cls;
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(int first, int second, Tables tables, out int composite)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
            return true;
        }
        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0 && second is > TBase and < TBase + TCount)
        {
            composite = first + (second - TBase);
            return true;
        }
        return tables.Compositions.TryGetValue(((long)first << 32) | (uint)second, out composite);
    }

    private sealed class Tables
    {
        public readonly Dictionary<int, int[]> Canonical = [];
        public readonly Dictionary<int, int[]> Compatibility = [];
        public readonly Dictionary<int, int> Classes = [];
        public readonly Dictionary<long, int> Compositions = [];

        public int CombiningClass(int cp) => Classes.TryGetValue(cp, out var c) ? c : 0;

        public static Tables Load()
        {
            var tables = new Tables();
            using var stream = typeof(UnicodeNormalizer).Assembly.GetManifestResourceStream("Celer.Tokenization.UnicodeNormalization.data")
                ?? throw new InvalidOperationException("UnicodeNormalization.data is not embedded in Celer.Tokenization.");
            using var reader = new StreamReader(stream, Encoding.ASCII);
            while (reader.ReadLine() is { } line)
            {
                if (line.Length == 0 || line[0] == '#') continue;
                var f = line.Split(' ');
                int cp = int.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                switch (f[0])
                {
                    case "D": tables.Canonical[cp] = ParseHex(f, 2); break;
                    case "K": tables.Compatibility[cp] = ParseHex(f, 2); break;
                    case "C": tables.Classes[cp] = int.Parse(f[2], CultureInfo.InvariantCulture); break;
                    case "P":
                        int second = int.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        tables.Compositions[((long)cp << 32) | (uint)second] = int.Parse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        break;
                }
            }
            // The data lists NFKD only where it differs from NFD; fall back to NFD otherwise.
            foreach (var (cp, d) in tables.Canonical) tables.Compatibility.TryAdd(cp, d);
            return tables;
        }

        private static int[] ParseHex(string[] fields, int from) =>
            fields[from..].Select(h => int.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
    }
}
