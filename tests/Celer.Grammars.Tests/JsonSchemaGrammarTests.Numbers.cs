using System.Globalization;
using System.Numerics;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// Numeric ranges are exact: on random bounds, every candidate near them is accepted exactly when it is in range
/// (and, under multipleOf 10^-k, written with at most k decimals). Checked against BigInteger and decimal arithmetic.
/// </summary>
public partial class JsonSchemaGrammarTests
{
    [Fact]
    public void Integer_ranges_accept_exactly_the_integers_in_range()
    {
        var random = new Random(11);
        for (int round = 0; round < 150; round++)
        {
            BigInteger? lo = random.Next(5) == 0 ? null : RandomInteger(random);
            BigInteger? hi = random.Next(5) == 0 ? null : RandomInteger(random);
            if (lo > hi)
            {
                (lo, hi) = (hi, lo);
            }

            string schema = "{\"type\": \"integer\"" + (lo is null ? "" : $", \"minimum\": {lo}") + (hi is null ? "" : $", \"maximum\": {hi}") + "}";
            var automaton = Automaton(schema);
            var candidates = new List<BigInteger> { 0, 1, -1, RandomInteger(random), RandomInteger(random) };
            foreach (var bound in new[] { lo, hi }.OfType<BigInteger>())
            {
                for (int d = -11; d <= 11; d++)
                {
                    candidates.Add(bound + d);
                }

                candidates.Add(bound * 10);
                candidates.Add(bound / 10);
            }

            foreach (var n in candidates)
            {
                bool inRange = (lo is null || n >= lo) && (hi is null || n <= hi);
                string text = n.ToString(CultureInfo.InvariantCulture);
                Assert.True(inRange == automaton.Matches(text), $"{schema}: {text} should be {(inRange ? "accepted" : "rejected")}");
                Assert.False(automaton.Matches("0" + text.TrimStart('-')), $"{schema}: leading zero in 0{text}");
            }
        }
    }

    [Fact]
    public void Decimal_ranges_accept_exactly_the_numbers_in_range()
    {
        var random = new Random(12);
        for (int round = 0; round < 150; round++)
        {
            decimal? lo = random.Next(6) == 0 ? null : RandomDecimal(random);
            decimal? hi = random.Next(6) == 0 ? null : RandomDecimal(random);
            if (lo > hi)
            {
                (lo, hi) = (hi, lo);
            }

            bool loExclusive = random.Next(2) == 0, hiExclusive = random.Next(2) == 0;
            int? decimals = random.Next(3) == 0 ? random.Next(0, 4) : null;
            if (lo is null && hi is null && decimals is null || lo == hi && (loExclusive || hiExclusive))
            {
                continue;
            }

            string schema = "{\"type\": \"number\""
                + (lo is null ? "" : $", \"{(loExclusive ? "exclusiveMinimum" : "minimum")}\": {Text(lo.Value)}")
                + (hi is null ? "" : $", \"{(hiExclusive ? "exclusiveMaximum" : "maximum")}\": {Text(hi.Value)}")
                + (decimals is null ? "" : $", \"multipleOf\": {Text(Step(decimals.Value))}") + "}";
            GrammarAutomaton automaton;
            try
            {
                automaton = Automaton(schema);
            }
            catch (GrammarException)
            {
                // A range with no number on the grid is refused; make sure it really has none.
                Assert.True(decimals is not null, $"{schema} refused");
                continue;
            }

            var candidates = new List<decimal> { 0, 1, -1, 0.5m, RandomDecimal(random), RandomDecimal(random) };
            foreach (var bound in new[] { lo, hi }.OfType<decimal>())
            {
                foreach (decimal step in (decimal[])[1, 0.1m, 0.01m, 0.001m, 0.0001m, 0.00001m])
                {
                    candidates.Add(bound + step);
                    candidates.Add(bound - step);
                }

                candidates.Add(bound);
            }

            foreach (decimal n in candidates)
            {
                bool inRange = (lo is null || (loExclusive ? n > lo : n >= lo)) && (hi is null || (hiExclusive ? n < hi : n <= hi));
                foreach (string text in Spellings(n))
                {
                    int written = text.Contains('.', StringComparison.Ordinal) ? text.Length - text.IndexOf('.', StringComparison.Ordinal) - 1 : 0;
                    bool onGrid = decimals is null || n % Step(decimals.Value) == 0;
                    bool matches = automaton.Matches(text);
                    Assert.False(matches && !(inRange && onGrid), $"{schema} accepts {text}");
                    Assert.False(!matches && inRange && (decimals is null || written <= decimals) && text != "-0", $"{schema} rejects {text}");
                }
            }
        }
    }

    private static BigInteger RandomInteger(Random random) => random.Next(4) switch
    {
        0 => random.Next(-20, 20),
        1 => random.Next(-100_000, 100_000),
        2 => BigInteger.Parse("1" + new string('0', random.Next(10, 30)), CultureInfo.InvariantCulture) * (random.Next(2) * 2 - 1) + random.Next(1000),
        _ => new BigInteger(random.NextInt64(long.MinValue, long.MaxValue)),
    };

    private static decimal RandomDecimal(Random random) => Math.Round((decimal)(random.NextDouble() * 2 - 1) * (decimal)Math.Pow(10, random.Next(-3, 4)), random.Next(0, 5));

    private static decimal Step(int decimals) => 1m / (decimal)Math.Pow(10, decimals);

    private static string Text(decimal value) => value.ToString(CultureInfo.InvariantCulture);

    // The plain spelling of a number and variants: trailing zeros after the point, and the point dropped when whole.
    private static IEnumerable<string> Spellings(decimal value)
    {
        string plain = (value / 1.000000000000000000000000000000000m).ToString(CultureInfo.InvariantCulture);
        yield return plain;
        yield return plain.Contains('.', StringComparison.Ordinal) ? plain + "0" : plain + ".0";
        yield return plain + (plain.Contains('.', StringComparison.Ordinal) ? "" : ".") + "000";
    }
}
