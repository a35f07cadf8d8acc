namespace Celer.ChatTemplates.Syntax;

/// <summary>
/// vLLM's <c>_detect_content_format</c> (vllm/renderers/hf.py) over Celer's syntax tree: a template is in the OpenAI
/// format when it loops over a message's content, <c>{% for part in message['content'] %}</c> (through filters, tests
/// and slices, as in <c>message['content'] | selectattr('type', 'equalto', 'image')</c>) for a message taken by a loop
/// over <c>messages</c> or over a variable set from it, or loops over a variable named <c>content</c>; otherwise it
/// reads content as a string. Like vLLM's it is a search of the tree, not a data-flow analysis: a loop anywhere counts.
/// </summary>
internal static class ContentFormatDetector
{
    public static ChatTemplateContentFormat Detect(List<Stmt> body)
    {
        var sets = new List<SetStmt>();
        var loops = new List<ForStmt>();
        Collect(body, sets, loops);

        var messagesNames = RelatedNames("messages", sets);
        var messageNames = loops
            .Where(loop => loop.Target is NameExpr && messagesNames.Any(name => IsVarOrElemsAccess(loop.Iter, name, null)))
            .Select(loop => ((NameExpr)loop.Target).Name)
            .ToList();
        foreach (var loop in loops)
        {
            if (loop.Target is not NameExpr)
                continue;
            if (messageNames.Any(name => IsVarOrElemsAccess(loop.Iter, name, "content")))
                return ChatTemplateContentFormat.OpenAI;
            // vLLM's later rule (#42660): a macro given the content loops over it under its own name.
            if (loop.Iter is NameExpr { Name: "content" })
                return ChatTemplateContentFormat.OpenAI;
        }
        return ChatTemplateContentFormat.String;
    }

    /// <summary><paramref name="root"/> and every variable set from it, or from one of those (vLLM's breadth-first search).</summary>
    private static List<string> RelatedNames(string root, List<SetStmt> sets)
    {
        var names = new List<string> { root };
        var queue = new Queue<string>([root]);
        while (queue.TryDequeue(out var related))
        {
            foreach (var set in sets)
            {
                if (set.Target is NameExpr { Name: var target } && IsVarOrElemsAccess(set.Value, related, null) && !names.Contains(target))
                {
                    names.Add(target);
                    queue.Enqueue(target);
                }
            }
        }
        return names;
    }

    /// <summary>
    /// vLLM's <c>_is_var_or_elems_access</c>: the variable itself (or its <paramref name="key"/> item or attribute),
    /// possibly filtered, tested or sliced.
    /// </summary>
    private static bool IsVarOrElemsAccess(Expr node, string name, string? key) => node switch
    {
        FilterExpr { Target: { } target } => IsVarOrElemsAccess(target, name, key),
        TestExpr test => IsVarOrElemsAccess(test.Target, name, key),
        GetItemExpr { Key: SliceExpr } slice => IsVarOrElemsAccess(slice.Target, name, key),
        _ when key is null => node is NameExpr n && n.Name == name,
        GetItemExpr { Target: NameExpr n, Key: ConstExpr { Value: string k } } => n.Name == name && k == key,
        GetAttrExpr { Target: NameExpr n } attr => n.Name == name && attr.Name == key,
        _ => false,
    };

    private static void Collect(List<Stmt> body, List<SetStmt> sets, List<ForStmt> loops)
    {
        foreach (var stmt in body)
        {
            switch (stmt)
            {
                case SetStmt set:
                    sets.Add(set);
                    break;
                case ForStmt loop:
                    loops.Add(loop);
                    Collect(loop.Body, sets, loops);
                    Collect(loop.Else, sets, loops);
                    break;
                case IfStmt branches:
                    foreach (var (_, branch) in branches.Branches)
                        Collect(branch, sets, loops);
                    Collect(branches.Else, sets, loops);
                    break;
                case SetBlockStmt block:
                    Collect(block.Body, sets, loops);
                    break;
                case MacroStmt macro:
                    Collect(macro.Body, sets, loops);
                    break;
                case FilterBlockStmt filtered:
                    Collect(filtered.Body, sets, loops);
                    break;
                case ScopeStmt scope:
                    Collect(scope.Body, sets, loops);
                    break;
            }
        }
    }
}
