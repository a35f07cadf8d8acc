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
}
