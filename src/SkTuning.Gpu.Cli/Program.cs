Console.WriteLine("sktune");
