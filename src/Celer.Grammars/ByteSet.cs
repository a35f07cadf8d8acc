namespace Celer.Grammars;

/// <summary>A set of byte values, 256 bits: the label of one grammar transition.</summary>
public readonly record struct ByteSet(ulong W0, ulong W1, ulong W2, ulong W3)
{
    public static ByteSet Empty => default;

    public static ByteSet All => new(ulong.MaxValue, ulong.MaxValue, ulong.MaxValue, ulong.MaxValue);

    public static ByteSet Of(byte value) => Range(value, value);

    /// <summary>The bytes lo..hi, both included.</summary>
    public static ByteSet Range(byte lo, byte hi)
    {
        ulong w0 = 0, w1 = 0, w2 = 0, w3 = 0;
        for (int b = lo; b <= hi; b++)
        {
            ulong bit = 1UL << (b & 63);
            switch (b >> 6)
            {
                case 0: w0 |= bit; break;
                case 1: w1 |= bit; break;
                case 2: w2 |= bit; break;
                default: w3 |= bit; break;
            }
        }

        return new ByteSet(w0, w1, w2, w3);
    }

    public bool Contains(byte value)
    {
        ulong word = (value >> 6) switch { 0 => W0, 1 => W1, 2 => W2, _ => W3 };
        return (word >> (value & 63) & 1) != 0;
    }

    public bool IsEmpty => (W0 | W1 | W2 | W3) == 0;

    public int Count => System.Numerics.BitOperations.PopCount(W0) + System.Numerics.BitOperations.PopCount(W1)
        + System.Numerics.BitOperations.PopCount(W2) + System.Numerics.BitOperations.PopCount(W3);

    public ByteSet Union(ByteSet other) => new(W0 | other.W0, W1 | other.W1, W2 | other.W2, W3 | other.W3);

    public ByteSet Intersect(ByteSet other) => new(W0 & other.W0, W1 & other.W1, W2 & other.W2, W3 & other.W3);

    public ByteSet Complement() => new(~W0, ~W1, ~W2, ~W3);

    /// <summary>The bytes of the set in ascending order.</summary>
    public IEnumerable<byte> Values()
    {
        for (int b = 0; b < 256; b++)
        {
            if (Contains((byte)b))
            {
                yield return (byte)b;
            }
        }
    }

    public override string ToString()
    {
        var text = new System.Text.StringBuilder("[");
        int b = 0;
        while (b < 256)
        {
            if (!Contains((byte)b))
            {
                b++;
                continue;
            }

            int end = b;
            while (end + 1 < 256 && Contains((byte)(end + 1)))
            {
                end++;
            }

            text.Append(Show(b));
            if (end > b)
            {
                text.Append('-').Append(Show(end));
            }

            b = end + 1;
        }

        return text.Append(']').ToString();

        static string Show(int value) => value is >= 0x21 and < 0x7f and not ('-' or ']' or '\\') ? ((char)value).ToString() : $"\\x{value:x2}";
    }
}
