using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class AdmissionControlTests
{
    [Fact]
    public void Admits_up_to_the_limit_then_503_with_retry_after_and_frees_on_dispose()
    {
        var admission = new AdmissionControl(maxPendingSequences: 3);
        var a = admission.Enter(2, 1);
        var b = admission.Enter(1, 1);
        var e = Assert.Throws<OpenAIException>(() => admission.Enter(1, 1));
        Assert.Equal(503, e.StatusCode);
        Assert.Equal(AdmissionControl.RetryAfterSeconds, e.RetryAfterSeconds);
        Assert.Equal(3, admission.InFlight);

        a.Dispose();
        a.Dispose(); // a second dispose must not free the slots twice
        Assert.Equal(1, admission.InFlight);
        using var c = admission.Enter(2, 1);
        b.Dispose();
        Assert.Equal(2, admission.InFlight);
    }

    [Fact]
    public void Draining_refuses_new_requests_but_keeps_admitted_ones()
    {
        var admission = new AdmissionControl(10);
        using var lease = admission.Enter(1, 1);
        admission.BeginDraining();
        Assert.True(admission.IsDraining);
        Assert.Equal(503, Assert.Throws<OpenAIException>(() => admission.Enter(1, 1)).StatusCode);
        Assert.Equal(1, admission.InFlight);
    }

    [Fact]
    public async Task Drained_completes_only_once_draining_and_the_last_lease_is_released()
    {
        var admission = new AdmissionControl(10);
        var first = admission.Enter(2, 1);
        var second = admission.Enter(1, 1);
        var drained = admission.WaitForDrainedAsync(CancellationToken.None);
        first.Dispose();
        second.Dispose();
        Assert.False(drained.IsCompleted, "an idle server that is not draining is not drained");

        using var third = admission.Enter(1, 1);
        admission.BeginDraining();
        Assert.False(drained.IsCompleted);
        third.Dispose();
        await drained.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
    }

    [Fact]
    public void A_dead_engine_refuses_every_request_with_503()
    {
        var dead = false;
        var admission = new AdmissionControl(10, () => dead);
        using (admission.Enter(1, 1))
        {
            dead = true;
            var e = Assert.Throws<OpenAIException>(() => admission.Enter(1, 1));
            Assert.Equal(503, e.StatusCode);
            Assert.NotNull(e.RetryAfterSeconds);
        }
        Assert.Equal(0, admission.InFlight);
    }

    [Fact]
    public void Sequences_are_counted_and_a_request_larger_than_the_queue_is_a_400()
    {
        var admission = new AdmissionControl(8);
        using (admission.Enter(2, 4))   // two prompts, n = 4: the whole queue
        {
            Assert.Equal(8, admission.InFlight);
            Assert.Equal(503, Assert.Throws<OpenAIException>(() => admission.Enter(1, 1)).StatusCode);
        }

        var tooLarge = Assert.Throws<OpenAIException>(() => admission.Enter(3, 3));
        Assert.Equal(400, tooLarge.StatusCode);
        Assert.Contains("9 sequences (3 prompt(s) x n=3)", tooLarge.Message, StringComparison.Ordinal);
        // 256 prompts x n = 128 would overflow nothing and queue nothing.
        Assert.Equal(400, Assert.Throws<OpenAIException>(() => admission.Enter(256, 128)).StatusCode);
        Assert.Equal(0, admission.InFlight);
    }
}
