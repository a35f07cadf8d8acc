using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Scheduling;

public class RequestQueueTests
{
    private static Request R(string id, int priority, double arrival, long order)
    {
        Request r = TestRequests.Make(id, [1, 2, 3], priority: priority, arrivalTime: arrival);
        r.ArrivalOrder = order;
        return r;
    }

    [Fact]
    public void Fcfs_PopsInArrivalOrder_PrependGoesFirst_RemoveFromMiddle()
    {
        var queue = new FcfsRequestQueue();
        Request a = R("a", 9, 1, 0), b = R("b", 0, 2, 1), c = R("c", 0, 3, 2), d = R("d", 0, 4, 3);
        queue.Add(a);
        queue.Add(b);
        queue.Add(c);
        queue.Prepend(d);
        Assert.True(queue.Remove(b));
        Assert.False(queue.Remove(b));
        Assert.Equal(["d", "a", "c"], queue.Select(r => r.RequestId));
        Assert.Equal("d", queue.Pop().RequestId);
        Assert.Equal("a", queue.Peek().RequestId);
    }

    [Fact]
    public void Priority_LowerValueFirst_ThenArrivalTime_ThenArrivalOrder()
    {
        var queue = new PriorityRequestQueue();
        queue.Add(R("late-urgent", 0, 5, 0));
        queue.Add(R("early-normal", 1, 1, 1));
        queue.Add(R("tie-second", 0, 5, 3));
        queue.Add(R("early-urgent", 0, 2, 2));
        Assert.Equal(["early-urgent", "late-urgent", "tie-second", "early-normal"],
            Enumerable.Range(0, 4).Select(_ => queue.Pop().RequestId));
        Assert.Throws<InvalidOperationException>(() => queue.Peek());
    }
}
