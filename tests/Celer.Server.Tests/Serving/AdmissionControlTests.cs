using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class AdmissionControlTests
{
    [Fact]
    public void Admits_up_to_the_limit_then_503_with_retry_after_and_frees_on_dispose()
    {
        var admission = new AdmissionControl(maxPendingRequests: 3);
        var a = admission.Enter(2);
        var b = admission.Enter(1);
        var e = Assert.Throws<OpenAIException>(() => admission.Enter(1));
        Assert.Equal(503, e.StatusCode);
        Assert.Equal(AdmissionControl.RetryAfterSeconds, e.RetryAfterSeconds);
        Assert.Equal(3, admission.InFlight);

        a.Dispose();
        a.Dispose(); // a second dispose must not free the slots twice
        Assert.Equal(1, admission.InFlight);
        using var c = admission.Enter(2);
        b.Dispose();
        Assert.Equal(2, admission.InFlight);
    }

    [Fact]
    public void Draining_refuses_new_requests_but_keeps_admitted_ones()
    {
        var admission = new AdmissionControl(10);
        using var lease = admission.Enter(1);
        admission.BeginDraining();
        Assert.True(admission.IsDraining);
        Assert.Equal(503, Assert.Throws<OpenAIException>(() => admission.Enter(1)).StatusCode);
        Assert.Equal(1, admission.InFlight);
    }

    [Fact]
    public async Task Drained_completes_only_once_draining_and_the_last_lease_is_released()
    {
        var admission = new AdmissionControl(10);
        var first = admission.Enter(2);
        var second = admission.Enter(1);
        var drained = admission.WaitForDrainedAsync(CancellationToken.None);
        first.Dispose();
        second.Dispose();
        Assert.False(drained.IsCompleted, "an idle server that is not draining is not drained");

        using var third = admission.Enter(1);
        admission.BeginDraining();
        Assert.False(drained.IsCompleted);
        third.Dispose();
        await drained.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_dead_engine_refuses_every_request_with_503()
    {
        var dead = false;
        var admission = new AdmissionControl(10, () => dead);
        using (admission.Enter(1))
        {
            dead = true;
            var e = Assert.Throws<OpenAIException>(() => admission.Enter(1));
            Assert.Equal(503, e.StatusCode);
            Assert.NotNull(e.RetryAfterSeconds);
        }
        Assert.Equal(0, admission.InFlight);
    }
}
