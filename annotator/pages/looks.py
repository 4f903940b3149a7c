import streamlit as st

st.title("looks")
st.info("Coming soon.")
