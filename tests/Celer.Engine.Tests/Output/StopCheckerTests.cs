using Celer.Engine.Output;

namespace Celer.Engine.Tests.Output;

public class StopCheckerTests
{
    [Fact]
    public void CheckStopStrings_FindsOnlyMatchesEndingInTheNewText()
    {
        Assert.Null(StopChecker.CheckStopStrings("abc STOP def", 3, ["STOP"], false));
        Assert.Equal(("STOP", 4), StopChecker.CheckStopStrings("abc STOP def", 8, ["STOP"], false));
        // A match that straddles old and new text is found.
        Assert.Equal(("STOP", 4), StopChecker.CheckStopStrings("abc STOP", 2, ["STOP"], false));
    }

    [Fact]
    public void CheckStopStrings_IncludeFlag_CutsAfterTheStopString()
    {
        Assert.Equal(("STOP", 8), StopChecker.CheckStopStrings("abc STOP def", 8, ["STOP"], true));
        Assert.Equal(("STOP", -1), StopChecker.CheckStopStrings("abc STOP", 8, ["STOP"], true));
    }

    [Fact]
    public void CheckStopStrings_TakesTheEarliestMatch()
    {
        Assert.Equal(("a", 1), StopChecker.CheckStopStrings("xab", 3, ["b", "a"], false));
    }

    [Fact]
    public void HoldBackLength_IsTheLongestSuffixThatPrefixesAStopString()
    {
        Assert.Equal(0, StopChecker.HoldBackLength("hello wor", ["STOP"]));
        Assert.Equal(2, StopChecker.HoldBackLength("hello ST", ["STOP"]));
        Assert.Equal(3, StopChecker.HoldBackLength("hello STO", ["xx", "STOP", "O"]));
        // A full stop string at the end is no longer "might become": the checker handles it.
        Assert.Equal(0, StopChecker.HoldBackLength("x STOP", ["STOP"]));
        Assert.Equal(1, StopChecker.HoldBackLength("S", ["STOP"]));
    }
}
