namespace Celer.Engine.Scheduling;

/// <summary>How waiting requests are ordered (vLLM's <c>--scheduling-policy</c>).</summary>
public enum SchedulingPolicy
{
    /// <summary>First come, first served.</summary>
    Fcfs,

    /// <summary>Lower <see cref="Request.Priority"/> first, then earlier arrival.</summary>
    Priority,
}

/// <summary>The waiting queue (vLLM's <c>RequestQueue</c>).</summary>
public interface IRequestQueue : IReadOnlyCollection<Request>
{
    void Add(Request request);

    /// <summary>Puts a request back at the front (a preempted request resumes before newcomers).</summary>
    void Prepend(Request request);
    Request Peek();
    Request Pop();
    bool Remove(Request request);

    public static IRequestQueue Create(SchedulingPolicy policy) => policy switch
    {
        SchedulingPolicy.Fcfs => new FcfsRequestQueue(),
        SchedulingPolicy.Priority => new PriorityRequestQueue(),
        _ => throw new ArgumentOutOfRangeException(nameof(policy), policy, null),
    };
}

public sealed class FcfsRequestQueue : IRequestQueue
{
    private readonly LinkedList<Request> _queue = new();
    private readonly Dictionary<Request, LinkedListNode<Request>> _nodes = [];

    public int Count => _queue.Count;

    public void Add(Request request) => _nodes.Add(request, _queue.AddLast(request));

    public void Prepend(Request request) => _nodes.Add(request, _queue.AddFirst(request));

    public Request Peek() => _queue.First?.Value ?? throw new InvalidOperationException("The queue is empty.");

    public Request Pop()
    {
        Request request = Peek();
        _queue.RemoveFirst();
        _nodes.Remove(request);
        return request;
    }

    public bool Remove(Request request)
    {
        if (!_nodes.Remove(request, out LinkedListNode<Request>? node))
        {
            return false;
        }
        _queue.Remove(node);
        return true;
    }

    public IEnumerator<Request> GetEnumerator() => _queue.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>
/// Ordered by (priority, arrival time, arrival order). A preempted request keeps its arrival
/// time, so "prepend" is just an insert: it lands ahead of everything that arrived after it.
/// </summary>
public sealed class PriorityRequestQueue : IRequestQueue
{
    private readonly SortedSet<Request> _queue = new(PriorityComparer.Instance);

    public int Count => _queue.Count;

    public void Add(Request request)
    {
        if (!_queue.Add(request))
        {
            throw new InvalidOperationException($"Request {request.RequestId} is already queued.");
        }
    }

    public void Prepend(Request request) => Add(request);

    public Request Peek() => _queue.Min ?? throw new InvalidOperationException("The queue is empty.");

    public Request Pop()
    {
        Request request = Peek();
        _queue.Remove(request);
        return request;
    }

    public bool Remove(Request request) => _queue.Remove(request);

    public IEnumerator<Request> GetEnumerator() => _queue.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Scheduling order; the first of two requests is served first (and preempted last).</summary>
    internal sealed class PriorityComparer : IComparer<Request>
    {
        public static readonly PriorityComparer Instance = new();

        public int Compare(Request? x, Request? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }
            int c = x!.Priority.CompareTo(y!.Priority);
            if (c == 0)
            {
                c = x.ArrivalTime.CompareTo(y.ArrivalTime);
            }
            return c != 0 ? c : x.ArrivalOrder.CompareTo(y.ArrivalOrder);
        }
    }
}
