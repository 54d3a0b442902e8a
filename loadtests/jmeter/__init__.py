"""The JMeter plan for perfserve's scenarios (perfserve.jmx), its bodies and its gate."""
